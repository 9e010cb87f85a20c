from .quality import Quality
from .vessel_seg import VesselSeg

# model name (--conf models ...) -> its task config
CONFIGS = {"vessel_seg": VesselSeg, "quality": Quality}
