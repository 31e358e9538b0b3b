"""A PyTorch MAE (encoder names timm's, decoder names MAE's), written from the MAE paper's
description: the reference the C engine is checked against, layer by layer and whole."""
import numpy as np
import torch
import torch.nn as nn


class Attention(nn.Module):
    """Multi-head self-attention. ``fused`` False (the default): the products and softmax written
    out, the reference the C engine is checked against; True: PyTorch's fused
    ``scaled_dot_product_attention``, its fastest CPU path (``use_sdpa``)."""
    fused = False

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.num_heads
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, hs).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.fused:
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            return self.proj(out.transpose(1, 2).reshape(B, T, C))
        att = (q @ k.transpose(-2, -1)) * hs ** -0.5
        att = att.softmax(dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(B, T, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def patchify(imgs, p):
    """(B, 3, S, S) -> (B, N, p*p*3) in (p, q, c) order."""
    B, _, S, _ = imgs.shape
    h = S // p
    x = imgs.reshape(B, 3, h, p, h, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, h * h, p * p * 3)


class MAE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, Cd, N = cfg.embed_dim, cfg.decoder_embed_dim, cfg.num_patches
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.patch_size, C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, N + 1, C), requires_grad=cfg.learned_pos)
        self.blocks = nn.ModuleList([Block(C, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(C, eps=1e-6)
        if cfg.encoder_only:
            return
        self.decoder_embed = nn.Linear(C, Cd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Cd))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, N + 1, Cd), requires_grad=cfg.learned_pos)
        self.decoder_blocks = nn.ModuleList([Block(Cd, cfg.decoder_num_heads, cfg.mlp_ratio)
                                             for _ in range(cfg.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(Cd, eps=1e-6)
        self.decoder_pred = nn.Linear(Cd, cfg.patch_dim)

    def forward_encoder(self, imgs, ids_keep=None):
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        if ids_keep is not None:
            x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward_decoder(self, latent, ids_keep):
        """latent (B, 1+n, C) -> pred (B, N, d) in grid order, and the removed-patch mask (B, N),
        1 = removed. MAE's shuffle: kept first, then the removed ones (ascending, from one
        stable sort); ids_restore undoes it."""
        B, n = ids_keep.shape
        N = self.cfg.num_patches
        mask = torch.ones(B, N, dtype=latent.dtype, device=latent.device)
        mask.scatter_(1, ids_keep, 0.0)
        removed = torch.argsort(mask, dim=1, descending=True, stable=True)[:, :N - n]
        ids_restore = torch.argsort(torch.cat([ids_keep, removed], dim=1), dim=1)

        x = self.decoder_embed(latent)
        tokens = self.mask_token.expand(B, N - n, -1)
        x_ = torch.cat([x[:, 1:], tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:], mask

    def forward(self, imgs, ids_keep):
        pred, mask = self.forward_decoder(self.forward_encoder(imgs, ids_keep), ids_keep)

        target = patchify(imgs, self.cfg.patch_size)
        if self.cfg.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()


def decay_groups(model):
    """AdamW groups as pacofr forms them: decay on matrix weights only."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.ndim >= 2 and name.endswith(".weight")
        (decay if is_matrix else no_decay).append(p)
    return decay, no_decay


def from_numpy_state(model, state):
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    return model


def grads_numpy(model):
    return {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()
            if p.requires_grad and p.grad is not None}


def use_sdpa(model, on=True):
    """Switch every Attention of model to PyTorch's fused attention (on) or the written-out one."""
    for m in model.modules():
        if isinstance(m, Attention):
            m.fused = bool(on)
    return model
