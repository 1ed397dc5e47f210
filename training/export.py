"""The trained weights out of a DeepSpeed engine: LoRA adapter, merged HF model, verified.

Under ZeRO-3 every rank holds only a partition of each parameter, so the module's own
``state_dict`` is empty placeholders; `full_state_dict` gathers the whole model layer by layer onto
rank 0 (DeepSpeed's consolidation, enabled by ``stage3_gather_16bit_weights_on_model_save``; all
ranks must call it). Rank 0 then loads that state into a fresh CPU copy of the model: the peft
adapter is saved as is (``adapter/``, standard peft layout), LoRA is merged into the base and the
result saved as a standard HF directory (``export/``), which is loaded back and checked against
the unmerged model on a probe input, so an export that does not reproduce the trained model fails
the run instead of shipping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# max |logit difference| between the trained (unmerged) and the exported model: merging LoRA into
# fp32 weights rounds differently from applying it on the side, an error that grows with the
# logits' size and the depth (~1e-4 on SmolLM2-135M's logits of ~20); a lost or wrong merge is
# orders of magnitude larger.
EXPORT_ATOL, EXPORT_RTOL = 1e-4, 2e-5


def full_state_dict(engine: Any, rank: int) -> dict[str, Any] | None:
    """The complete model state on rank 0 (CPU tensors), None elsewhere; collective under ZeRO-3."""
    if engine.zero_optimization_partition_weights():
        if not engine.zero_gather_16bit_weights_on_model_save():
            raise RuntimeError("ZeRO-3 export needs stage3_gather_16bit_weights_on_model_save in the DeepSpeed config")
        return engine._zero3_consolidated_16bit_state_dict()  # the consolidation HF Trainer and accelerate use
    if rank != 0:
        return None
    return {k: v.detach().cpu() for k, v in engine.module.state_dict().items()}


def export_trained(
    model: Any, state: dict[str, Any], tokenizer: Any, out_dir: Path, probe_ids: list[int]
) -> dict[str, Any]:
    """Save ``adapter/`` (LoRA runs) and the merged ``export/`` from ``state`` loaded into ``model``
    (a fresh CPU copy of the trained architecture); returns paths and the verified logit gap."""
    import torch
    from transformers import AutoModelForCausalLM

    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"trained state does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    probe = torch.tensor([probe_ids])
    with torch.no_grad():
        reference = model(input_ids=probe).logits.float()
    result: dict[str, Any] = {}
    if hasattr(model, "merge_and_unload"):
        adapter = out_dir / "adapter"
        model.save_pretrained(adapter, safe_serialization=True)
        result["adapter"] = str(adapter)
        model = model.merge_and_unload()
    export = out_dir / "export"
    model.save_pretrained(export, safe_serialization=True)
    tokenizer.save_pretrained(export)
    reloaded = AutoModelForCausalLM.from_pretrained(export, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        gap = float((reloaded(input_ids=probe).logits.float() - reference).abs().max())
    tolerance = EXPORT_ATOL + EXPORT_RTOL * float(reference.abs().max())
    if not gap <= tolerance:
        raise RuntimeError(
            f"{export}: exported model's logits differ from the trained model's by {gap:.3g} "
            f"(tolerance {tolerance:.3g})"
        )
    result.update(export=str(export), export_max_abs_logit_diff=gap)
    return result
