"""Exact KL between categorical distributions given by logits, in bounded memory.

For LLM token policies the logits are ``[batch, seq, vocab]``: 16 x 512 x 32000 float32 is 1 GiB per
tensor, and ``torch.distributions`` materialises several full-size temporaries (two normalised
logits, two probability tensors, the product). Here the rows are processed in chunks, so at most one
chunk of each softmax exists at a time, and the backward pass recomputes the chunk from the saved
inputs with the closed-form gradients

    dKL(p||q)/dz_q = q - p,        dKL(p||q)/dz_p = p * (log p - log q - KL),

so training through the KL never stores a full softmax either.
"""

from __future__ import annotations

import torch

# Elements per chunk and per temporary: 2**21 float32 = 8 MiB, which keeps a chunk's temporaries
# close to the CPU caches (benchmarks/bench_token_kl.py measures the choice).
DEFAULT_CHUNK_ELEMENTS = 2**21


def _rows_per_chunk(vocab: int, chunk_elements: int) -> int:
    return max(1, chunk_elements // max(vocab, 1))


def _chunk_kl(zp: torch.Tensor, zq: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """KL(p||q) per row of one chunk; KL = sum_i p_i (z_p,i - z_q,i) - (lse_p - lse_q)."""
    zp = zp.to(out_dtype)
    zq = zq.to(out_dtype)
    lse_p = torch.logsumexp(zp, dim=-1, keepdim=True)
    lse_q = torch.logsumexp(zq, dim=-1, keepdim=True)
    p = torch.exp(zp - lse_p)
    diff = zp - zq
    kl = torch.linalg.vecdot(p, diff) - (lse_p - lse_q).squeeze(-1)
    # A category with p = 0 (z_p = -inf) makes 0 * (-inf) = nan above; it contributes nothing.
    # Only such rows are recomputed, so genuine NaNs in the inputs still propagate.
    bad = torch.isnan(kl)
    if bad.any():
        lp = zp[bad] - lse_p[bad]
        lq = zq[bad] - lse_q[bad]
        pb = p[bad]
        term = (pb * (lp - lq)).masked_fill(pb == 0, 0.0)
        kl[bad] = term.sum(-1)
    return kl


class _ChunkedCategoricalKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, zp, zq, row_mask, chunk_elements):
        vocab = zp.shape[-1]
        out_dtype = torch.promote_types(zp.dtype, torch.float32)
        zp2, zq2 = zp.reshape(-1, vocab), zq.reshape(-1, vocab)
        rows = zp2.shape[0]
        out = torch.zeros(rows, dtype=out_dtype, device=zp.device)
        step = _rows_per_chunk(vocab, chunk_elements)
        active = None if row_mask is None else row_mask.reshape(-1)
        for start in range(0, rows, step):
            sl = slice(start, min(start + step, rows))
            if active is None:
                out[sl] = _chunk_kl(zp2[sl], zq2[sl], out_dtype)
            else:
                idx = active[sl].nonzero().squeeze(-1)
                if idx.numel():
                    out[start + idx] = _chunk_kl(zp2[sl][idx], zq2[sl][idx], out_dtype)
        ctx.save_for_backward(zp, zq, out, row_mask if row_mask is not None else torch.empty(0))
        ctx.has_mask = row_mask is not None
        ctx.chunk_elements = chunk_elements
        return out.reshape(zp.shape[:-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        zp, zq, kl, row_mask = ctx.saved_tensors
        need_p, need_q = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        vocab = zp.shape[-1]
        zp2, zq2 = zp.reshape(-1, vocab), zq.reshape(-1, vocab)
        g = grad_out.reshape(-1).to(kl.dtype)
        active = row_mask.reshape(-1) if ctx.has_mask else None
        grad_p = torch.zeros_like(zp2) if need_p else None
        grad_q = torch.zeros_like(zq2) if need_q else None
        step = _rows_per_chunk(vocab, ctx.chunk_elements)
        for start in range(0, zp2.shape[0], step):
            rows = torch.arange(start, min(start + step, zp2.shape[0]), device=zp.device)
            if active is not None:
                # Masked rows may hold padding garbage (even NaN): never touch them.
                rows = rows[active[rows]]
                if not rows.numel():
                    continue
            lp = torch.log_softmax(zp2[rows].to(kl.dtype), dim=-1)
            lq = torch.log_softmax(zq2[rows].to(kl.dtype), dim=-1)
            p = lp.exp()
            gs = g[rows].unsqueeze(-1)
            if need_q:
                grad_q[rows] = (gs * (lq.exp() - p)).to(zq.dtype)
            if need_p:
                term = ((lp - lq) - kl[rows].unsqueeze(-1)) * p
                grad_p[rows] = (gs * term.masked_fill(p == 0, 0.0)).to(zp.dtype)
        shape = zp.shape
        return (
            grad_p.reshape(shape) if need_p else None,
            grad_q.reshape(shape) if need_q else None,
            None,
            None,
        )


def categorical_kl(
    logits_p: torch.Tensor,
    logits_q: torch.Tensor,
    mask: torch.Tensor | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """Exact KL(p || q) per position for logits ``[..., V]``; returns shape ``[...]``.

    ``mask`` (shape ``[...]``, bool or 0/1) marks the positions to compute; the others are 0 and get
    no gradient, and are skipped entirely (no softmax is computed for them). Supports first-order
    gradients with respect to both logits. Infinite where q gives 0 probability to a category p
    does not (the true value).
    """
    if logits_p.shape != logits_q.shape:
        raise ValueError(
            f"categorical KL needs logits of the same shape, got {tuple(logits_p.shape)} and "
            f"{tuple(logits_q.shape)}"
        )
    if mask is not None:
        if mask.shape != logits_p.shape[:-1]:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} must equal the logits' batch shape "
                f"{tuple(logits_p.shape[:-1])}"
            )
        mask = mask.to(torch.bool)
    if chunk_elements < 1:
        raise ValueError(f"chunk_elements must be >= 1, got {chunk_elements}")
    return _ChunkedCategoricalKL.apply(logits_p, logits_q, mask, chunk_elements)
