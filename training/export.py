"""The trained weights out of a DeepSpeed engine: LoRA adapter, merged HF model, verified.

Under ZeRO-3 every rank holds only a partition of each parameter, so the module's own
``state_dict`` is empty placeholders; `full_state_dict` gathers the whole model layer by layer onto
rank 0 (DeepSpeed's consolidation, enabled by ``stage3_gather_16bit_weights_on_model_save``; all
ranks must call it). Rank 0 then loads that state into a fresh CPU copy of the model: the peft
adapter is saved as is (``adapter/``, standard peft layout), LoRA is merged into the base and the
result saved as a standard HF directory (``export/``), which is loaded back and checked against
the unmerged model on a probe input, so an export that does not reproduce the trained model fails
the run instead of shipping.

``python -m training.export --run DIR --format gguf --quant q4_0 --out model.gguf`` turns that
merged model (or any HF directory, ``--model``) into a deployable file: GGUF for llama.cpp-style
runtimes (`training.gguf_export`) or a HF directory in f32/f16. The file is loaded back with
transformers on the spot and its logits compared with the source model's on fixed prompts
(relative RMS error, max error, top-1 agreement, printed per prompt) against a tolerance per
quantisation type, and its tokenizer must encode and decode the prompts to the same ids and text
and carry the same chat template; a file that fails is removed and the command exits non-zero.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from dataclasses import asdict, dataclass, field
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


# Relative RMS logit error (RMS of the difference / std of the reference logits) an exported file
# may show; unrelated logits give ~1.4. Measured (docs/SERVING.md): f16 ~4e-4 and q8_0 ~1e-2 on a
# random-init tiny Llama and on SmolLM2-135M; q4_0 0.1 on the tiny Llama but 0.4-0.6 (top-1
# agreement ~0.5) on SmolLM2-135M, whose bundled weights are already Q4_1-rounded (q4_1 keeps them
# exactly), which is what 4-bit blocks without an offset do to a model that small.
EXPORT_TOLERANCE = {"f32": 1e-5, "f16": 5e-3, "q8_0": 5e-2, "q4_1": 0.3, "q4_0": 0.8}
FORMATS = ("gguf", "hf")
PROBES = (
    "The tenant shall keep the premises in good repair and return them at the end of the lease.",
    "第三条 当事人应当遵循诚信原则，按照约定全面履行自己的义务。",
    "Invoice 2024-0193: 3 items, total EUR 1,250.00, due 30 days after delivery.",
)


class ExportError(RuntimeError):
    """The export cannot be made or did not verify; the message names the file and the check."""


@dataclass
class ProbeResult:
    prompt: str
    tokens: int
    rel_rms: float
    max_abs: float
    top1: float


@dataclass
class ExportReport:
    path: str
    format: str
    quant: str
    bytes: int
    tolerance: float
    worst_rel_rms: float
    probes: list[ProbeResult] = field(default_factory=list)
    tensor_types: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        lines = [
            f"{self.path}: {self.format} {self.quant}, {self.bytes / 2**20:.1f} MiB, "
            f"tensors {self.tensor_types or '-'}",
            f"{'prompt':<42}{'tokens':>7}{'rel rms':>10}{'max abs':>10}{'top-1':>7}",
        ]
        for p in self.probes:
            lines.append(f"{p.prompt[:40]:<42}{p.tokens:>7}{p.rel_rms:>10.2e}{p.max_abs:>10.3g}{p.top1:>7.3f}")
        lines.append(
            f"worst relative RMS error {self.worst_rel_rms:.2e}, tolerance for {self.quant} {self.tolerance:.0e}"
        )
        return "\n".join(lines)


def source_model_dir(run: Path | None, model: str | None) -> Path:
    """The model to export: a run's merged ``export/`` or a HF directory (``default``: SmolLM2)."""
    from common.models import ModelNotFoundError, resolve_model_path

    if run is not None:
        export = run / "export"
        if not (export / "config.json").exists():
            raise ExportError(
                f"{run}: no merged model in {export} (the run has not finished, or was run with export: false)"
            )
        return export
    try:
        return resolve_model_path(model)
    except ModelNotFoundError as exc:
        raise ExportError(str(exc)) from None


def probe_ids(tokenizer: Any, context: int) -> list[list[int]]:
    """The fixed prompts as token ids, one of them through the chat template when there is one."""
    prompts = [tokenizer(p)["input_ids"] for p in PROBES]
    if getattr(tokenizer, "chat_template", None):
        chat = tokenizer.apply_chat_template([{"role": "user", "content": PROBES[0]}], add_generation_prompt=True)
        prompts.append(list(chat["input_ids"] if hasattr(chat, "keys") else chat))
    return [p[: max(1, context)] for p in prompts]


def compare_logits(reference: Any, candidate: Any, prompts: list[list[int]], labels: list[str]) -> list[ProbeResult]:
    import torch

    rows = []
    with torch.no_grad():
        for ids, label in zip(prompts, labels, strict=True):
            x = torch.tensor([ids])
            want = reference(input_ids=x).logits.float()
            got = candidate(input_ids=x).logits.float()
            diff = got - want
            rows.append(
                ProbeResult(
                    prompt=label,
                    tokens=len(ids),
                    rel_rms=float(diff.pow(2).mean().sqrt() / want.std().clamp_min(1e-12)),
                    max_abs=float(diff.abs().max()),
                    top1=float((got.argmax(-1) == want.argmax(-1)).float().mean()),
                )
            )
    return rows


def check_tokenizer(source: Any, exported: Any, path: Path) -> None:
    """Same ids and text for every probe, same chat template and special tokens, or an error."""
    for text in (*PROBES, "<|im_start|>user\nhi<|im_end|>"):
        want, got = source(text)["input_ids"], exported(text)["input_ids"]
        if want != got:
            raise ExportError(f"{path}: the exported tokenizer encodes {text[:40]!r} as {got[:12]}, not {want[:12]}")
        if exported.decode(got, skip_special_tokens=False) != source.decode(want, skip_special_tokens=False):
            raise ExportError(f"{path}: the exported tokenizer does not decode {text[:40]!r} back to the same text")
    if (source.chat_template or None) != (exported.chat_template or None):
        raise ExportError(f"{path}: the chat template did not survive the export")
    for name in ("bos_token_id", "eos_token_id"):
        if getattr(source, name) is not None and getattr(source, name) != getattr(exported, name):
            before, after = getattr(source, name), getattr(exported, name)
            raise ExportError(f"{path}: {name} is {after} after the export, {before} before")


def export_model(source: Path, fmt: str, quant: str, out: Path) -> ExportReport:
    """Write ``source`` (a HF directory) as ``fmt``/``quant`` to ``out``, load it back, verify it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.gguf_export import GgufExportError, write_gguf

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "hf" and quant not in ("f32", "f16"):
        raise ExportError(
            f"--format hf --quant {quant}: a HF directory is f32 or f16; {quant} is a GGUF block format "
            "(for int8 CPU inference serve the model with --quantize int8)"
        )
    if quant not in EXPORT_TOLERANCE:
        raise ExportError(f"--quant {quant!r}: choose one of {', '.join(EXPORT_TOLERANCE)}")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    types: dict[str, int] = {}
    if fmt == "gguf":
        try:
            name = source.parent.name if source.name == "export" else source.name  # a run's export/: the run
            summary = write_gguf(model, tokenizer, out, quant, name=name)
        except GgufExportError as exc:
            raise ExportError(f"{source}: {exc}") from None
        types = summary.tensor_types
        load = {"pretrained_model_name_or_path": out.parent, "gguf_file": out.name}
    else:
        if out.exists():
            shutil.rmtree(out)
        saved = copy.deepcopy(model).to(torch.float16) if quant == "f16" else model  # the reference stays f32
        saved.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        load = {"pretrained_model_name_or_path": out}
    try:
        candidate = AutoModelForCausalLM.from_pretrained(**load, dtype=torch.float32).eval()
        prompts = probe_ids(tokenizer, model.config.max_position_embeddings)
        labels = [*PROBES, "(chat template) " + PROBES[0]][: len(prompts)]
        probes = compare_logits(model, candidate, prompts, labels)
        check_tokenizer(tokenizer, AutoTokenizer.from_pretrained(**load), out)
        report = ExportReport(
            path=str(out),
            format=fmt,
            quant=quant,
            bytes=_size(out),
            tolerance=EXPORT_TOLERANCE[quant],
            worst_rel_rms=max(p.rel_rms for p in probes),
            probes=probes,
            tensor_types=types,
        )
        if not report.worst_rel_rms <= report.tolerance:
            raise ExportError(
                f"{out}: logits differ from {source} by a relative RMS error of {report.worst_rel_rms:.3g} "
                f"(tolerance for {quant}: {report.tolerance:g})\n{report.table()}"
            )
    except BaseException:
        _remove(out)
        raise
    return report


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.export",
        description="Export a trained model as GGUF (llama.cpp, Ollama) or a HF directory, verified by its logits.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="a training.run output_dir (its merged export/ is exported)")
    src.add_argument("--model", help="a Hugging Face model directory, or 'default' for the bundled SmolLM2")
    p.add_argument("--format", choices=FORMATS, default="gguf")
    p.add_argument("--quant", choices=tuple(EXPORT_TOLERANCE), default="f16")
    p.add_argument("--out", type=Path, required=True, help="the .gguf file, or the directory for --format hf")
    args = p.parse_args(argv)
    try:
        report = export_model(source_model_dir(args.run, args.model), args.format, args.quant, args.out)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.table())
    print(json.dumps(asdict(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
