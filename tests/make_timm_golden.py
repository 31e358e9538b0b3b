"""Write tests/golden/timm_encoder.npz with real timm (run by hand, in an environment that has
timm; timm needs torchvision, which the test machine's PyTorch build lacks):

    python tests/make_timm_golden.py

The golden MAE encoder's weights, converted by pacofr.checkpoint.to_timm, loaded with
strict=True into timm's VisionTransformer; its forward_features on the golden images and its
own state-dict key order are stored, so the suite proves the layout without timm installed.
"""
from pathlib import Path

import numpy as np
import timm
import torch

HERE = Path(__file__).resolve().parent
from pacofr.checkpoint import to_timm


def main():
    golden = np.load(HERE / "golden" / "mae_test_tiny.npz")
    state = {k[6:]: golden[k] for k in golden.files if k.startswith("param/")}
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, mlp_ratio=4.0,
        num_classes=0, class_token=True, global_pool="token")
    vit.load_state_dict({k: torch.from_numpy(v) for k, v in to_timm(state).items()}, strict=True)
    vit.eval()
    with torch.no_grad():
        features = vit.forward_features(torch.from_numpy(golden["images"])).numpy()
    np.savez_compressed(HERE / "golden" / "timm_encoder.npz", features=features,
                        keys=np.array(list(vit.state_dict())), timm_version=timm.__version__,
                        torch_version=torch.__version__)
    print(f"timm {timm.__version__}, torch {torch.__version__}: features {features.shape}")


if __name__ == "__main__":
    main()
