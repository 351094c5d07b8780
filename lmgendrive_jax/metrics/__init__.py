"""Video-generation metrics: PSNR/SSIM (`image.py`), FID/FVD with pluggable feature networks
(`frechet.py`, `features.py`)."""
