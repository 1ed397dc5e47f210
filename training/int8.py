"""Weight-only int8 linear layers for CPU serving (``training.serve --quantize int8``).

Every ``nn.Linear`` (the LM head included) becomes an `Int8Linear`: int8 weights with one scale
per output channel, multiplied by torch's own CPU kernel ``aten._weight_int8pack_mm`` (the one
gpt-fast/torchao use) with the activations in bfloat16 when a call has few rows (decoding), and
by a bf16 GEMM on the int8 values, scaled after, when it has many (a prompt's prefill: the kernel
is a GEMV per row there, 2x slower than fp32; see `PREFILL_ROWS`). Nothing is quantised at run
time. torch's dynamic int8 (``quantize_dynamic``) quantises each layer's *input* per tensor, and
SmolLM2's hidden states carry a few channels thousands of times larger than the rest, so that
model came out a different one (relative logit error 0.84, top-1 agreement 0.28;
``benchmarks/int8_layers.py``). The kernel's fp32-activation path is 10-20x slower than its bf16
one on this CPU (``benchmarks/int8_kernels.py``).

The weights are rounded with GPTQ (Frantar et al. 2022): column by column, each rounding error is
pushed onto the columns not yet rounded, weighted by the inverse Hessian ``X^T X`` of the layer's
inputs on a fixed calibration text (`CALIBRATION`, run through the model at load time; ~17-20 s
for SmolLM2-135M on 2 cores). On SmolLM2-135M plain round-to-nearest per-channel int8 left a
relative logit error of 0.06 and top-1 agreement 0.90; GPTQ brings it to the level of GGUF q8_0
(docs/SERVING.md).

Tied embeddings (SmolLM2 ties ``lm_head`` to ``embed_tokens``): the input embedding becomes an
`Int8Embedding` (per-row scales, rounded to nearest before calibration, so GPTQ sees its error)
and the LM head its own GPTQ-rounded int8 copy; ``share_tied=True`` makes the lookup read the
head's int8 matrix and scales instead (one int8 copy, 27 MiB less for SmolLM2, slightly less
accurate: the lookup then gets GPTQ's rounding, tuned for the head's inputs). No fp32 copy of a
quantised weight survives loading.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import torch
from torch import nn

# Fixed calibration text for GPTQ's Hessians: prose, science, code, numbers, Chinese, German and
# French, and chat-template turns. It shares no text with the prompts the accuracy is measured on
# (`training.export.PROBES`, `benchmarks/int8_layers.py`). Changing it changes the rounding.
CALIBRATION = (
    "The old harbour town grew up around a single stone quay. Fishing boats left before dawn and came back "
    "in the afternoon, when the market filled with buyers from the villages inland. In the nineteenth century "
    "the railway arrived, the fish went to the cities on ice, and the town built a school, a hospital and a "
    "small museum whose best room still shows the charts the first pilots drew by hand.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. In the chloroplasts, "
    "chlorophyll absorbs mostly red and blue light, which is why leaves look green. The sugar feeds the plant "
    "and, through the food chain, almost every animal on Earth; the oxygen is what we breathe.",
    "def moving_average(values: list[float], window: int) -> list[float]:\n"
    '    """Mean of each run of `window` consecutive values."""\n'
    "    if window <= 0:\n        raise ValueError('window must be positive')\n"
    "    total, out = 0.0, []\n    for i, v in enumerate(values):\n        total += v\n"
    "        if i >= window:\n            total -= values[i - window]\n"
    "        if i >= window - 1:\n            out.append(total / window)\n    return out\n",
    "Station 14, 6 May: 07:00 11.2 C, humidity 83%, wind NW 14 km/h; 13:00 17.9 C, 61%, W 22 km/h; "
    "rain 3.4 mm (total for the month 41.7 mm, 68% of the 1991-2020 mean). Match report: 2-1 after extra time, "
    "possession 54/46, shots 17 (6 on target) to 9 (3).",
    "秋天的山里空气清新，树叶由绿变黄，再慢慢变红。清晨的雾气还没有散去，村口的小路上已经有人挑着担子去赶集。"
    "中午太阳出来以后，孩子们在田边追着蜻蜓跑，老人坐在门前晒太阳，聊着今年的收成。",
    "Für den Teig Mehl, Zucker und eine Prise Salz mischen, dann die kalte Butter in Stücken einarbeiten und "
    "den Teig eine Stunde kühlen. Pour la garniture, couper les pommes en fines tranches et les disposer en rosace.",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "How do I keep basil alive on a windowsill?<|im_end|>\n<|im_start|>assistant\n"
    "Give it at least six hours of light, water when the top of the soil is dry, pinch off the flower buds, "
    "and harvest from the top so it grows bushier instead of tall.<|im_end|>\n"
    "<|im_start|>user\nAnd in winter?<|im_end|>\n<|im_start|>assistant\n"
    "Keep it away from cold glass, water less, and add a small grow light if the days are short.<|im_end|>\n",
)

_ACT = torch.bfloat16  # the activations' dtype in the kernel: its fp32 path is unvectorised (~10x slower)

# From this many rows (a prompt's prefill) a linear casts its int8 weight to bf16 and runs a bf16
# GEMM instead of ``_weight_int8pack_mm``, whose cost grows with the rows as a GEMV's does:
# SmolLM2's 1536x576 at 160 rows takes 2.1 ms in the kernel, 0.43 ms cast + GEMM, 0.96 ms fp32;
# below ~16 rows the kernel wins (`benchmarks/int8_kernels.py`). The cast is transient (one
# layer's weight in bf16 at a time).
PREFILL_ROWS = 24


class Int8Embedding(nn.Module):
    """Rows of an int8 matrix times their per-row scale: the input embedding of a model whose LM
    head is tied to it, as its own int8 copy (the default) or, with ``share_tied``, reading the
    head's int8 weight and scales (one copy for both)."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight[ids].float() * self.scales[ids].float().unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 per-row"


class Int8Linear(nn.Module):
    """``y = x @ (weight * scales[:, None]).T + bias``: int8 weights, one scale per output channel."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight.to(torch.int8).contiguous())
        self.register_buffer("scales", scales.to(_ACT).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, hessian: torch.Tensor | None = None) -> Int8Linear:
        q, scales = quantize_weight(linear.weight.detach().float(), hessian)
        return cls(q, scales, linear.bias)

    def dequantized(self) -> torch.Tensor:
        return self.weight.float() * self.scales.float()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(_ACT).contiguous()
        if flat.shape[0] < PREFILL_ROWS:
            y = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)
        else:  # a prompt: bf16 GEMM (oneDNN) on the int8 values (exact in bf16), scaled after
            y = torch.nn.functional.linear(flat, self.weight.to(_ACT)).float() * self.scales.float()
        y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def channel_scales(weight: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel scales, rounded to the kernel's dtype so ``q * scale`` is exact."""
    return (weight.abs().amax(1).clamp_min(1e-8) / 127).to(_ACT).float()


def quantize_weight(
    weight: torch.Tensor, hessian: torch.Tensor | None = None, *, block: int = 32, damp: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 values and per-row scales for ``weight`` [out, in]: round to nearest, or GPTQ when the
    input Hessian ``X^T X`` [in, in] is given (columns in order of decreasing Hessian diagonal)."""
    weight = weight.float()
    scales = channel_scales(weight)
    if hessian is None:
        return (weight / scales[:, None]).round_().clamp_(-127, 127).to(torch.int8), scales
    # transients kept to one fp32 copy of the weight (the 49152x576 head: ~110 MiB, not ~450)
    h = hessian.float().clone()
    dead = torch.diag(h) == 0  # inputs never seen in calibration: their columns do not matter to it
    h[dead, dead] = 1
    order = torch.argsort(torch.diag(h), descending=True)
    w = weight[:, order]  # a copy, permuted
    w[:, dead[order]] = 0
    h = h[order][:, order]
    h += damp * torch.diag(h).mean() * torch.eye(h.shape[0])
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.empty(w.shape, dtype=torch.int8)
    inv_s = 1 / scales
    for i1 in range(0, w.shape[1], block):
        i2 = min(i1 + block, w.shape[1])
        w1, err1, h1 = w[:, i1:i2].clone(), torch.empty(w.shape[0], i2 - i1), hinv[i1:i2, i1:i2]
        for j in range(i2 - i1):
            qj = torch.round(w1[:, j] * inv_s).clamp_(-127, 127)
            q[:, i1 + j] = qj.to(torch.int8)
            e = (w1[:, j] - qj * scales) / h1[j, j]
            w1[:, j:] -= e[:, None] * h1[j, j:][None, :]
            err1[:, j] = e
        w[:, i2:].addmm_(err1, hinv[i1:i2, i2:], alpha=-1)
    del w
    return q[:, torch.argsort(order)], scales


def calibration_ids(tokenizer: Any, context: int) -> list[list[int]]:
    return [tokenizer(text)["input_ids"][: max(1, context)] for text in CALIBRATION]


def _linears(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, attribute, full name) of every nn.Linear, in module order."""
    found = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear):
                found.append((module, child_name, f"{name}.{child_name}" if name else child_name))
    return found


def _hessian_bytes(target: tuple[nn.Module, str, str]) -> int:
    return getattr(target[0], target[1]).in_features ** 2 * 4


def _hessians(model: nn.Module, names: set[str], prompts: list[list[int]]) -> dict[str, torch.Tensor]:
    sums: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if name in names:

            def hook(_mod: nn.Module, args: tuple[Any, ...], _out: Any, name: str = name) -> None:
                x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
                sums[name] = sums.get(name, 0) + x.T @ x

            hooks.append(module.register_forward_hook(hook))
    try:
        # logits only where the LM head is measured: the rest need no [positions, vocab] output
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        measured = [module for name, module in model.named_modules() if name in names]
        keep = {} if head is None or any(m is head for m in measured) else {"logits_to_keep": 1}
        with torch.no_grad():
            for ids in prompts:
                model(input_ids=torch.tensor([ids]), **keep)
    finally:
        for h in hooks:
            h.remove()
    return sums


def _tied_head(model: Any) -> bool:
    get_in, get_out = getattr(model, "get_input_embeddings", None), getattr(model, "get_output_embeddings", None)
    if get_in is None or get_out is None:
        return False
    emb, head = get_in(), get_out()
    return (
        isinstance(emb, nn.Embedding)
        and isinstance(head, nn.Linear)
        and head.bias is None
        and head.weight.data_ptr() == emb.weight.data_ptr()
        and head.weight.shape == emb.weight.shape
    )


def _quantize_chunk(chunk: list[tuple[nn.Module, str, str]], hessians: dict[str, torch.Tensor]) -> None:
    """Replace the chunk's linears; those with the same Hessian (the same input: q/k/v, gate/up)
    are rounded together as one matrix (GPTQ treats rows independently, so nothing changes but
    the number of column passes)."""
    groups: list[tuple[torch.Tensor | None, list[tuple[nn.Module, str, str]]]] = []
    for target in chunk:
        h = hessians.pop(target[2], None)
        for hg, members in groups:
            if h is not None and hg is not None and hg.shape == h.shape and torch.equal(hg, h):
                members.append(target)
                break
        else:
            groups.append((h, [target]))
    for h, members in groups:
        linears = [getattr(parent, attr) for parent, attr, _ in members]
        weight = torch.cat([lin.weight.detach().float() for lin in linears]) if len(linears) > 1 else None
        q, scales = quantize_weight(linears[0].weight.detach() if weight is None else weight, h)
        del weight
        start = 0
        for (parent, attr, _), lin in zip(members, linears, strict=True):
            stop = start + lin.out_features
            setattr(parent, attr, Int8Linear(q[start:stop], scales[start:stop], lin.bias))
            start = stop
        _drop_file_pages([lin.weight for lin in linears])
        del linears, q, scales, h


def _drop_file_pages(tensors: list[torch.Tensor]) -> None:
    """Unmap the pages of the checkpoint file under fp32 weights just quantised (``madvise``
    ``MADV_DONTNEED``), so the load peak does not hold the whole fp32 file and every int8 copy at
    once. Only ranges inside a file-backed mapping are touched, and heap memory is never passed. A
    later read faults the pages in again from the file, so this assumes the tensors were not written
    since they were mapped: ``from_pretrained`` maps safetensors privately, and a page written in
    place (an adapter merged into a tied embedding) would revert to the file's values."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import mmap

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        page = mmap.PAGESIZE
        files = []
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and fields[5].startswith("/"):
                    lo, hi = (int(x, 16) for x in fields[0].split("-"))
                    files.append((lo, hi))
    except (OSError, AttributeError):
        return
    for t in tensors:
        start = t.data_ptr()
        end = start + t.numel() * t.element_size()
        lo, hi = -(-start // page) * page, end // page * page
        if hi > lo and t.is_contiguous() and any(a <= lo and hi <= b for a, b in files):
            libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 4)  # MADV_DONTNEED


def release_memory() -> None:
    """Collect the replaced fp32 modules (reference cycles) and hand freed heap back to the OS
    (glibc keeps large freed blocks in its arenas, ~100 MiB after quantising SmolLM2-135M)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def quantize_int8(model: Any, tokenizer: Any = None, *, chunk_bytes: int = 96 << 20, share_tied: bool = False) -> Any:
    """Every ``nn.Linear`` of ``model`` becomes an `Int8Linear`, in place; rounded with GPTQ on
    `CALIBRATION` when a tokenizer is given, else to nearest. A tied input embedding becomes an
    `Int8Embedding`: its own per-row copy rounded to nearest (before calibration, so GPTQ sees its
    error), or with ``share_tied`` the LM head's int8 weight and scales (one int8 copy for both, as
    one fp32 copy did); an untied embedding and the norms stay fp32.

    Calibration runs the model over the text once per chunk of layers whose Hessians fit in
    ``chunk_bytes`` (later chunks see the already-quantised earlier ones, as GPTQ does layer by layer).

    The fp32 weights that ``from_pretrained`` loads are views into the memory-mapped safetensors
    file; the tensors that stay fp32 (norms, an untied embedding) would keep the whole mapping
    alive (the int8 server then resident at 1.27x the fp32 one), so they are copied out of it, the
    replaced modules collected and the freed heap trimmed (`release_memory`). The quantised
    weights' checkpoint pages are unmapped (`_drop_file_pages`): pass a model as loaded, or one
    whose in-place changes live on the heap, not in the mapped file's pages."""
    tied = _tied_head(model)
    if tied and not share_tied:  # its own per-row int8 copy, in place before calibration sees it
        emb = model.get_input_embeddings()
        model.set_input_embeddings(Int8Embedding(*quantize_weight(emb.weight.detach())))
        _drop_file_pages([emb.weight])  # the head reads it again (faulted back in) when its turn comes
        del emb
    targets = _linears(model)
    prompts = None
    if tokenizer is not None:
        context = int(getattr(model.config, "max_position_embeddings", 2048))
        prompts = calibration_ids(tokenizer, context)
    while targets:
        chunk, size = [], 0
        while targets and (not chunk or size + _hessian_bytes(targets[0]) <= chunk_bytes):
            size += _hessian_bytes(targets[0])
            chunk.append(targets.pop(0))
        hessians = _hessians(model, {name for _, _, name in chunk}, prompts) if prompts else {}
        _quantize_chunk(chunk, hessians)
        del hessians
    if tied and share_tied:
        head = model.get_output_embeddings()
        model.set_input_embeddings(Int8Embedding(head.weight, head.scales))
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, Int8Linear | Int8Embedding):  # their tensors are new already
                for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                    tensor.data = tensor.data.clone()  # off the checkpoint's file mapping
    release_memory()  # the replaced fp32 modules sit in reference cycles: until collected they keep the file mapped
    return model
