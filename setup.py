"""lmgendrive-jax: LMGenDrive (language-guided driving + generative world model) in JAX/Flax."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12",
    "transformers>=5.0",
    "tokenizers>=0.22",
    "safetensors>=0.6",
    "grain>=0.2.15",
    "ml-collections>=1.1",
    "tensorflow-datasets>=4.9.9",
    "array_record>=0.8",
    "einops>=0.8",
    "numpy>=2.0",
    "pillow>=11",
    "imageio[ffmpeg]>=2.37",
    "tqdm>=4.67",
    "matplotlib>=3.10",
    "tensorboardX>=2.6",
    "absl-py>=2.1",
]

EXTRAS = {
    # References for parity tests. torch is pinned: an unpinned torch pulls a multi-GB CUDA build.
    # torchvision 0.28.0 is the release paired with torch 2.13.0 (timm imports it).
    "test": [
        "pytest>=8",
        "pytest-xdist>=3.5",
        "torch==2.13.0",
        "torchvision==0.28.0",
        "transformers>=5.0",
        "diffusers>=0.35",
        "timm>=1.0",
    ],
    "carla": ["carla==0.9.16"],
}

setup(
    name="lmgendrive-jax",
    version="0.1.0",
    description="LMGenDrive in JAX/Flax: language-guided closed-loop driving and world generation",
    python_requires=">=3.11",
    packages=find_packages(include=["lmgendrive_jax", "lmgendrive_jax.*", "data_pipelines",
                                    "data_pipelines.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
