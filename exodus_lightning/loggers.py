"""Weights & Biases logger that records offline when no W&B credentials are found."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn


def wandb_credentials_found() -> bool:
    """True if WANDB_API_KEY is set or ~/.netrc (or $NETRC) has a key for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger with `offline=None` (default) meaning: online if credentials exist.

    Without an API key (`wandb login` or WANDB_API_KEY) the run is recorded offline under
    `save_dir/wandb/offline-run-*`; upload it later with `wandb sync <that folder>`. WANDB_MODE,
    if set, is left to wandb. Other arguments are those of lightning's WandbLogger; extra
    keywords (entity, group, tags, ...) go to wandb.init.
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str = "logs",
        version: str | None = None,
        offline: bool | None = None,
        project: str = "exodus-lightning",
        log_model: bool | str = False,
        prefix: str = "",
        checkpoint_name: str | None = None,
        **kwargs,
    ) -> None:
        if offline is None:
            offline = "WANDB_MODE" not in os.environ and not wandb_credentials_found()
            if offline:
                rank_zero_info(
                    "W&B: no API key found (run `wandb login` or set WANDB_API_KEY), so this run "
                    f"is recorded offline under {save_dir}/wandb; upload it with `wandb sync`."
                )
        if offline and log_model:
            # Lightning refuses the pair (offline runs upload nothing); an offline run chosen
            # because no key was found must not fail over it.
            rank_zero_warn(
                f"W&B: log_model={log_model!r} is ignored: this run is recorded offline, so its "
                "checkpoints are not uploaded as W&B artifacts (they stay in the run's "
                "checkpoints folder)"
            )
            log_model = False
        super().__init__(
            name=name,
            save_dir=save_dir,
            version=version,
            offline=offline,
            project=project,
            log_model=log_model,
            prefix=prefix,
            checkpoint_name=checkpoint_name,
            **kwargs,
        )
        # Lightning passes anonymous=None to wandb.init, which then warns on every run that
        # the setting has no effect.
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)

    @property
    def experiment(self):
        """The wandb run, started on first use; save_dir is created only then (a run that
        never starts, such as fast_dev_run, leaves no folder behind)."""
        if self._experiment is None and self._save_dir:
            Path(self._save_dir).mkdir(parents=True, exist_ok=True)
        return super().experiment


def wandb_files_dir(logger: LightningWandbLogger) -> Path:
    """The folder for a W&B run's files: the run's own files folder (uploaded with it), or for
    a run that W&B disabled (WANDB_MODE=disabled), whose folder would be under the system's
    temporary folder, one under save_dir as offline runs have (wandb/disabled-run-<id>/files).

    Only where the run lives: on global rank 0. Elsewhere Lightning's logger has no run (a
    stand-in whose every attribute is a no-op), which is refused rather than named a folder.
    """
    import wandb

    run = logger.experiment
    if not isinstance(run, wandb.sdk.wandb_run.Run):
        raise RuntimeError(
            f"the W&B logger has no run in this process (its experiment is a "
            f"{type(run).__name__}): under DDP only global rank 0 has one; ask for the run's "
            "files folder on rank 0 only (trainer.is_global_zero)"
        )
    if run.disabled:
        folder = Path(logger.save_dir or ".") / "wandb" / f"disabled-run-{run.id}" / "files"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return Path(run.dir)
