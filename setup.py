#!/usr/bin/env python
"""fx_d2: Foundation X (multi-task chest X-ray foundation model) as a Detectron2 plugin.

Detectron2 itself is not on PyPI; ``make setup`` installs it with tools/install_detectron2.py
(see README).
"""

from setuptools import find_packages, setup

setup(
    name="fx_d2",
    version="0.1.0",
    description="Foundation X chest X-ray foundation model as a Detectron2 plugin",
    packages=find_packages(include=["fx_d2", "fx_d2.*"]),
    package_data={"fx_d2.testing": ["configs/*.yaml"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.11",
        "pycocotools>=2.0.7",
        "opencv-python-headless>=4.8",
        "numpy>=1.24",
        "pillow>=9.1",
        "pydicom>=2.4",
        "highdicom>=0.23",  # DICOM SEG / SR outputs of tools/predict.py
        "pylibjpeg>=2.0",
        "pylibjpeg-openjpeg>=2.0",
        "pylibjpeg-libjpeg>=2.0",
        "SimpleITK>=2.2",
        "scikit-learn>=1.2",
        "tqdm>=4.60",
        "matplotlib>=3.5",
        "pyyaml>=5.1",
    ],
    extras_require={
        "dev": [
            "pytest>=7",
            "pytest-xdist>=3",
            "timm>=0.9",
            "hypothesis>=6",
            "black>=23",
            "isort>=5",
            "flake8>=6",
        ],
    },
)
