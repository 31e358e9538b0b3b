"""Model configurations and the presets of docs/method.md (timm/MAE-style names)."""
import dataclasses
from dataclasses import dataclass


def check_fields(cls, d, what):
    """ValueError naming the keys of d that are not fields of the dataclass cls."""
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} fields: {', '.join(unknown)}")


# Largest sizes a config may ask for: beyond them a size is a typo, and an overflow or a huge
# allocation would follow (2^31 parameters is 8 GiB of float32, four buffers of it to train).
LIMITS = {"img_size": 8192, "patch_size": 256, "embed_dim": 16384, "depth": 1024, "num_heads": 1024,
          "decoder_embed_dim": 16384, "decoder_depth": 1024, "decoder_num_heads": 1024, "codebook_size": 1 << 20,
          "belief_hidden": 1 << 16, "mlp_ratio": 64, "num_patches": 1 << 16, "params": 1 << 31}


@dataclass(frozen=True)
class ViTConfig:
    """A MAE-style ViT encoder-decoder. mlp_ratio 4, LayerNorm eps 1e-6, exact GELU, a cls
    token; position embeddings fixed 2-D sin-cos unless ``learned_pos``."""
    img_size: int = 112
    patch_size: int = 8
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    decoder_embed_dim: int = 128
    decoder_depth: int = 4
    decoder_num_heads: int = 4
    mlp_ratio: float = 4.0
    learned_pos: bool = False
    norm_pix_loss: bool = True
    encoder_only: bool = False
    codebook_size: int = 0  # PaCo-FR: K codes (codebook.weight) and the belief MLP; 0: none
    belief_hidden: int = 512
    name: str = "custom"

    def __post_init__(self):
        for field in ("img_size", "patch_size", "embed_dim", "depth", "num_heads",
                      "decoder_embed_dim", "decoder_depth", "decoder_num_heads"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if "depth" in field else 1):
                raise ValueError(f"{field} must be a positive int, got {value!r}")
            if value > LIMITS[field]:
                raise ValueError(f"{field} must be at most {LIMITS[field]}, got {value}")
        for field in ("learned_pos", "norm_pix_loss", "encoder_only"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"{field} must be true or false, got {getattr(self, field)!r}")
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {self.name!r}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be a multiple of num_heads {self.num_heads}")
        if self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError(f"decoder_embed_dim {self.decoder_embed_dim} must be a multiple of "
                             f"decoder_num_heads {self.decoder_num_heads}")
        for field in ("codebook_size", "belief_hidden"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{field} must be a non-negative int, got {value!r}")
            if value > LIMITS[field]:
                raise ValueError(f"{field} must be at most {LIMITS[field]}, got {value}")
        if self.codebook_size and (self.encoder_only or self.belief_hidden < 1):
            raise ValueError("a codebook needs the decoder (encoder_only=False) and belief_hidden >= 1")
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)):
            raise TypeError(f"mlp_ratio must be a number, got {self.mlp_ratio!r}")
        if not 0 < self.mlp_ratio <= LIMITS["mlp_ratio"] or int(self.embed_dim * self.mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio must be in (0, {LIMITS['mlp_ratio']}] with a hidden width of at least 1, "
                             f"got {self.mlp_ratio!r}")
        if self.num_patches > LIMITS["num_patches"]:
            raise ValueError(f"img_size / patch_size = {self.grid_size} gives {self.num_patches} patches, more than "
                             f"{LIMITS['num_patches']}")
        if self.approx_params() > LIMITS["params"]:
            sizes = ", ".join(f"{k}={getattr(self, k)}" for k in ("embed_dim", "depth", "decoder_embed_dim",
                                                                    "decoder_depth", "mlp_ratio", "codebook_size"))
            raise ValueError(f"this config ({sizes}) has about {self.approx_params():.3g} parameters, more than "
                             f"{LIMITS['params']:.3g} (a typo in a size?)")

    def approx_params(self):
        """About how many parameters the model holds (blocks, embeddings, codebook): a size check."""
        C, Cd, d = self.embed_dim, self.decoder_embed_dim, self.patch_dim
        enc = self.depth * (4 + 2 * self.mlp_ratio) * C * C + (d + self.num_patches + 2) * C
        dec = 0 if self.encoder_only else (self.decoder_depth * (4 + 2 * self.mlp_ratio) * Cd * Cd
                                           + (C + d + self.num_patches) * Cd)
        return enc + dec + self.codebook_size * (d + self.belief_hidden) + d * self.belief_hidden

    @property
    def grid_size(self):
        return self.img_size // self.patch_size

    @property
    def num_patches(self):
        return self.grid_size ** 2

    @property
    def patch_dim(self):
        """Length of a reconstruction target, p*p*3, in (p, q, c) order."""
        return self.patch_size * self.patch_size * 3

    def c_kwargs(self):
        """Arguments of pacofr._C.vit_create."""
        return dict(img_size=self.img_size, patch_size=self.patch_size, embed_dim=self.embed_dim,
                    depth=self.depth, num_heads=self.num_heads,
                    mlp_hidden=int(self.embed_dim * self.mlp_ratio),
                    decoder_embed_dim=self.decoder_embed_dim, decoder_depth=self.decoder_depth,
                    decoder_num_heads=self.decoder_num_heads,
                    decoder_mlp_hidden=int(self.decoder_embed_dim * self.mlp_ratio),
                    encoder_only=self.encoder_only, learned_pos=self.learned_pos,
                    norm_pix_loss=self.norm_pix_loss, codebook_size=self.codebook_size,
                    belief_hidden=self.belief_hidden)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        check_fields(cls, d, "model config")
        return cls(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


PRESETS = {
    "pacofr_vit_tiny_p8_112": ViTConfig(112, 8, 192, 12, 3, 128, 4, 4, name="pacofr_vit_tiny_p8_112"),
    "pacofr_vit_small_p16_224": ViTConfig(224, 16, 384, 12, 6, 256, 4, 8, name="pacofr_vit_small_p16_224"),
    "pacofr_vit_base_p16_224": ViTConfig(224, 16, 768, 12, 12, 512, 8, 16, name="pacofr_vit_base_p16_224"),
    "pacofr_test_tiny": ViTConfig(32, 8, 64, 2, 2, 32, 1, 2, name="pacofr_test_tiny"),
}


def get_config(name, **overrides):
    """The preset called ``name``, with any field overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
