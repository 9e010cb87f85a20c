"""Networks: VasoMIM (MAE + guided masking), anatomy guidance, encoder export, classical baseline."""

from .anatomy import AnatomyGuidance, FrozenSegmenter, VesselnessSegmenter
from .classical import VesselnessThresholdSegmenter
from .encoder_export import EncoderKeyError, encoder_state_dict, export_encoder, load_encoder
from .guided_masking import guided_masking, patch_probabilities, reference_guided_masking
from .segmenter import ViTSegmenter, layer_decay_param_groups, resize_position_embeddings
from .vasomim import PRESETS, VasoMIM

__all__ = [
    "AnatomyGuidance",
    "EncoderKeyError",
    "FrozenSegmenter",
    "PRESETS",
    "VasoMIM",
    "ViTSegmenter",
    "VesselnessSegmenter",
    "VesselnessThresholdSegmenter",
    "encoder_state_dict",
    "export_encoder",
    "guided_masking",
    "layer_decay_param_groups",
    "load_encoder",
    "patch_probabilities",
    "reference_guided_masking",
    "resize_position_embeddings",
]
