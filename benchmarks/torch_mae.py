#!/usr/bin/env python3
"""PyTorch baseline for benchmarks/train.ts: a re-implementation of the official MAE (facebookresearch/mae,
models_mae.py with timm 0.3.2's Block), timed on the CPU.

Architecture as the official code: PatchEmbed as a Conv2d(kernel = stride = p); fixed 2-D sin-cos position tables;
random masking by argsort of uniform noise (ids_shuffle, ids_restore, gather); cls token; timm-style Block (pre-norm,
fused qkv Linear with bias, explicit softmax(q k^T * hd^-0.5) v, proj; Mlp fc1 -> exact GELU -> fc2); LayerNorm
eps 1e-6; decoder_embed, mask tokens appended and unshuffled, decoder blocks, decoder_norm, decoder_pred, cls dropped;
per-patch MSE on the removed patches, optional norm_pix target. Initialisation: xavier_uniform Linear weights (and the
conv weight on its [D, C*p*p] view), zero biases, N(0, 0.02) cls and mask tokens. Optimizer: torch.optim.AdamW with
betas (0.9, 0.95), weight decay 0.05 on >= 2-D tensors, none on biases and norms.

One deviation, for the benchmark only: at mask ratio 0 the official loss divides by mask.sum() = 0; here the mean
over all patches is taken instead (as our library does).

A step = forward + loss + backward + optimizer.step() + optimizer.zero_grad(). Prints one JSON line with --json.
--autocast bf16: the forward and loss under torch.autocast('cpu', dtype=torch.bfloat16) (PyTorch's mixed precision on
the CPU: bf16 matrix products through oneDNN, fp32 weights and optimizer), the backward outside it as PyTorch advises.
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "mae_vit_base_patch16": dict(img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12, num_heads=12,
                                 decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0),
    "mae_vit_large_patch16": dict(img_size=224, patch_size=16, in_chans=3, embed_dim=1024, depth=24, num_heads=16,
                                  decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0),
    "mae_vit_tiny_patch4_28": dict(img_size=28, patch_size=4, in_chans=1, embed_dim=192, depth=6, num_heads=3,
                                   decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4.0),
    "mae_vit_tiny_patch4_32": dict(img_size=32, patch_size=4, in_chans=3, embed_dim=192, depth=6, num_heads=3,
                                   decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4.0),
}


# ---- position tables (util/pos_embed.py) --------------------------------------------------------------------------
def sincos_1d(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(embed_dim, grid_size, cls_token=False):
    gh = np.arange(grid_size, dtype=np.float32)
    gw = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(gw, gh)  # w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])
    emb = np.concatenate([sincos_1d(embed_dim // 2, grid[0]), sincos_1d(embed_dim // 2, grid[1])], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return emb


# ---- timm 0.3.2 layers ----------------------------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, norm_layer):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# ---- models_mae.py ----------------------------------------------------------------------------------------------------
class MaskedAutoencoderViT(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=1024, depth=24, num_heads=16,
                 decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0, norm_pix_loss=False):
        super().__init__()
        norm_layer = lambda d: nn.LayerNorm(d, eps=1e-6)  # noqa: E731 (partial(nn.LayerNorm, eps=1e-6))
        self.in_chans = in_chans
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, norm_layer) for _ in range(depth)])
        self.norm = norm_layer(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, norm_layer) for _ in range(decoder_depth)])
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * in_chans, bias=True)
        self.norm_pix_loss = norm_pix_loss
        self.initialize_weights()

    def initialize_weights(self):
        grid = int(self.patch_embed.num_patches ** 0.5)
        self.pos_embed.data.copy_(torch.from_numpy(sincos_2d(self.pos_embed.shape[-1], grid, True)).float().unsqueeze(0))
        self.decoder_pos_embed.data.copy_(
            torch.from_numpy(sincos_2d(self.decoder_pos_embed.shape[-1], grid, True)).float().unsqueeze(0))
        w = self.patch_embed.proj.weight.data
        torch.nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        torch.nn.init.normal_(self.cls_token, std=0.02)
        torch.nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def patchify(self, imgs):
        p = self.patch_embed.proj.kernel_size[0]
        c = self.in_chans
        h = w = imgs.shape[2] // p
        x = imgs.reshape(imgs.shape[0], c, h, p, w, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(imgs.shape[0], h * w, p ** 2 * c)

    def random_masking(self, x, mask_ratio):
        N, L, D = x.shape
        len_keep = int(L * (1 - mask_ratio))
        noise = torch.rand(N, L, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, D))
        mask = torch.ones([N, L], device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore

    def forward_encoder(self, x, mask_ratio):
        x = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio)
        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        cls_tokens = cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        x = self.decoder_pred(x)
        return x[:, 1:, :]

    def forward_loss(self, imgs, pred, mask):
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = (pred - target) ** 2
        loss = loss.mean(dim=-1)
        msum = mask.sum()
        if msum.item() == 0:  # mask ratio 0: the official code would divide by zero
            return loss.mean()
        return (loss * mask).sum() / msum

    def forward(self, imgs, mask_ratio=0.75):
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio)
        pred = self.forward_decoder(latent, ids_restore)
        loss = self.forward_loss(imgs, pred, mask)
        return loss, pred, mask


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim == 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


# the products of nn.Linear (forward addmm, backward mm) and of the patch embedding's Conv2d: the work our `linear`
# does; attention's products (bmm) are left out, as our attention kernel computes them itself
LINEAR_OPS = ("aten::addmm", "aten::mm", "aten::mkldnn_convolution", "aten::convolution_backward")


def profile_steps(step, steps):
    """Self CPU time per step of every aten op over `steps` steps, largest first, and the part in LINEAR_OPS."""
    with torch.autograd.profiler.profile() as prof:
        for _ in range(steps):
            step()
    ops = {}
    for e in prof.key_averages():
        if e.key.startswith("aten::"):
            ops[e.key] = e.self_cpu_time_total / 1e3 / steps
    ops = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
    return {"steps": steps, "totalMs": sum(ops.values()), "linearMs": sum(ops.get(k, 0.0) for k in LINEAR_OPS),
            "opsMs": ops}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="mae_vit_tiny_patch4_28", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--mask-ratio", type=float, default=0.75)
    ap.add_argument("--norm-pix", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rep-seconds", type=float, default=2.0,
                    help="steps per repetition fill about this many seconds (1 to 10 steps; 0: one step)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="bf16: forward and loss under torch.autocast('cpu', dtype=torch.bfloat16)")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="after timing, profile this many steps: self CPU ms per step of each aten op, and the part in "
                         "the linear layers and the patch embedding (addmm, mm, convolution)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = PRESETS[a.preset]
    model = MaskedAutoencoderViT(**cfg, norm_pix_loss=a.norm_pix)
    model.train()
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1.5e-4 * a.batch / 256, betas=(0.9, 0.95))
    imgs = torch.randn(a.batch, cfg["in_chans"], cfg["img_size"], cfg["img_size"])

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16"):
            loss, _, _ = model(imgs, mask_ratio=a.mask_ratio)
        loss.item()
        loss.backward()
        opt.step()
        opt.zero_grad()

    last = 0.0
    for _ in range(a.warmup):
        t0 = time.perf_counter()
        step()
        last = time.perf_counter() - t0
    per = max(1, min(10, round(a.rep_seconds / last))) if last > 0 else 1
    runs = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        for _ in range(per):
            step()
        runs.append((time.perf_counter() - t0) / per)
    med = float(np.median(runs))
    out = {
        "preset": a.preset, "batch": a.batch, "maskRatio": a.mask_ratio, "secondsPerStep": med, "runs": runs,
        "imgPerSec": a.batch / med, "stepsPerRep": per, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "autocast": a.autocast,
    }
    if a.profile > 0:
        out["profile"] = profile_steps(step, a.profile)
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{a.preset} batch {a.batch} ratio {a.mask_ratio}: {med * 1e3:.1f} ms/step, {a.batch / med:.2f} img/s "
              f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
        if a.profile > 0:
            p = out["profile"]
            print(f"profile of {a.profile} steps: {p['totalMs']:.1f} ms/step of aten ops, of which linear layers and "
                  f"patch embedding {p['linearMs']:.1f} ms ({100 * p['linearMs'] / p['totalMs']:.1f}%)")
            for name, ms in list(p["opsMs"].items())[:12]:
                print(f"  {name:40s} {ms:8.2f} ms/step")


if __name__ == "__main__":
    sys.exit(main())
