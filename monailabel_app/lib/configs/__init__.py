from .quality import Quality
from .stenosis_det import StenosisDet, has_detector
from .vessel_seg import VesselSeg

# model name (--conf models ...) -> its task config
CONFIGS = {"vessel_seg": VesselSeg, "quality": Quality, "stenosis_det": StenosisDet}

# served by --conf models all only once they have something to serve (model name -> the test)
ALL_WHEN = {"stenosis_det": lambda model_dir, conf: has_detector(model_dir, "stenosis_det", conf)}
