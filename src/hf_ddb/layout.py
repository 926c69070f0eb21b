"""Where a run keeps what: the one description of a run folder, shared by the runner, the report and push."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunLayout"]


@dataclass(frozen=True)
class RunLayout:
    """The folders and files of a run under ``root`` (a config's ``output_dir``)::

        root/
          diffusion/pipeline/           BiasAlignedGenerationPipeline (+ README.md model card)
          synthetic/dataset/            the synthetic bias-aligned Dataset
          amplifier/model/              the bias amplifier (+ README.md), amplifier/signals.npz
          methods/<name>/model/         each trained classifier (+ README.md), methods/<name>/metrics.json
          results.json  results.md  group_accuracy.png  amplifier_losses.png  synthetic_samples.png
          cards.json                    what each model card was rendered from, and where push sent it

    Every stage folder holds ``stage.json`` once the stage finished (``stage.pending.json`` while it runs).
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def diffusion(self) -> Path:
        return self.root / "diffusion"

    @property
    def diffusion_pipeline(self) -> Path:
        return self.diffusion / "pipeline"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic"

    @property
    def synthetic_dataset(self) -> Path:
        return self.synthetic / "dataset"

    @property
    def amplifier(self) -> Path:
        return self.root / "amplifier"

    @property
    def amplifier_model(self) -> Path:
        return self.amplifier / "model"

    @property
    def signals(self) -> Path:
        return self.amplifier / "signals.npz"

    @property
    def cards(self) -> Path:
        return self.root / "cards.json"

    @property
    def samples_image(self) -> Path:
        return self.root / "synthetic_samples.png"

    def local_name(self, path: Path) -> str:
        """``path`` (inside the run) as cards and lineage name it before a push: relative, starting with ``./``
        (never read as a Hub repo id, and no machine path)."""
        return f"./{path.relative_to(self.root).as_posix()}"

    def method(self, name: str) -> Path:
        return self.root / "methods" / name

    def method_model(self, name: str) -> Path:
        return self.method(name) / "model"

    def method_metrics(self, name: str) -> Path:
        return self.method(name) / "metrics.json"

    def artefacts(self, classifier: str) -> dict[str, Path]:
        """The three folders `hf-ddb push` sends: the diffusion pipeline, the amplifier, ``classifier``'s model."""
        return {
            "diffusion": self.diffusion_pipeline,
            "amplifier": self.amplifier_model,
            "classifier": self.method_model(classifier),
        }
