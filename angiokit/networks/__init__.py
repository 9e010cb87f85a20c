"""Networks: VasoMIM (MAE + guided masking), anatomy guidance, encoder export and foreign weights
(MAE / timm / Hugging Face in and out), classical baseline."""

from .anatomy import AnatomyGuidance, FrozenSegmenter, VesselnessSegmenter, load_trained
from .checkpoint import NetworkSpec, checkpoint_setting, load_network, network_from_checkpoint, read_network_spec, records_constructor, save_checkpoint
from .cas_iqa import CASIQA, DEFAULT_PROMPTS, HFVisionEncoder, IQALoss, ViTRegressor  # IQALoss: its home is angiokit.losses
from .classical import VesselnessThresholdSegmenter
from .detection import StenosisRetinaNet, build_detector
from .export import QualityScoresExport, ResizingExport
from .encoder_export import EncoderKeyError, encoder_state_dict, export_encoder, load_encoder, load_encoder_file, resize_position_embeddings
from .foreign_weights import export_huggingface, export_timm, load_pretrained_encoder
from .guided_masking import guided_masking, patch_probabilities, reference_guided_masking
from .presets import PRESETS, size_overrides, vit_size
from .segmenter import BasicUNet, DynUNet, ViTSegmenter, layer_decay_param_groups
from .vasomim import VasoMIM

__all__ = [
    "QualityScoresExport",
    "ResizingExport",
    "AnatomyGuidance",
    "BasicUNet",
    "StenosisRetinaNet",
    "build_detector",
    "DynUNet",
    "NetworkSpec",
    "checkpoint_setting",
    "load_network",
    "network_from_checkpoint",
    "read_network_spec",
    "records_constructor",
    "save_checkpoint",
    "size_overrides",
    "vit_size",
    "CASIQA",
    "DEFAULT_PROMPTS",
    "EncoderKeyError",
    "FrozenSegmenter",
    "HFVisionEncoder",
    "IQALoss",
    "PRESETS",
    "VasoMIM",
    "ViTRegressor",
    "ViTSegmenter",
    "VesselnessSegmenter",
    "VesselnessThresholdSegmenter",
    "encoder_state_dict",
    "export_encoder",
    "export_huggingface",
    "export_timm",
    "guided_masking",
    "layer_decay_param_groups",
    "load_encoder",
    "load_encoder_file",
    "load_pretrained_encoder",
    "load_trained",
    "patch_probabilities",
    "reference_guided_masking",
    "resize_position_embeddings",
]
