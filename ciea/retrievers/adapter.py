"""CIEA's optional LoRA adapter on the language model that reads a document (image + caption).

The reference code fine-tunes its whole language model; on 2 CPU cores we offer the small
version, LoRA (peft) on the backbone's ``adapter_targets``. The adapter lives in a private copy
of the language model (``Backbone.with_private_language_model``), used only for CIEA's
documents: queries and the caption anchor stay the frozen sentence encoder's, so CIEA needs no
query encoder of its own and the service keeps sharing one text pass between retrievers.
The LoRA weights are registered as the head's ``adapter`` modules, so the head's checkpoint
holds them (well under 1 MB at rank 8 on the bundled backbone) and nothing else of the copy.
"""

from __future__ import annotations

from torch import nn

from ciea.backbones import Backbone


def attach_lora(backbone: Backbone, rank: int) -> tuple[Backbone, nn.ModuleList]:
    """A view of ``backbone`` whose private language model carries rank-``rank`` LoRA layers
    (alpha = 2 x rank, B initialised to zero, so it starts as the frozen model), and the LoRA
    modules in module order; only those are trainable."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    if not backbone.adapter_targets:
        raise ValueError(f"Backbone {backbone.spec!r} names no modules for a LoRA adapter.")
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=backbone.adapter_targets)
    modules = nn.ModuleList()

    def adapt(model: nn.Module) -> None:
        inject_adapter_in_model(config, model)
        model.requires_grad_(False)
        for layer in model.modules():
            if isinstance(layer, LoraLayer):
                modules.extend([layer.lora_A["default"], layer.lora_B["default"]])
        if not modules:
            raise ValueError(f"No module of {backbone.spec!r} matches {backbone.adapter_targets!r}.")
        modules.requires_grad_(True)

    return backbone.with_private_language_model(adapt), modules
