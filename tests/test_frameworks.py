"""rmsprop_ext.RMSprop inside the training frameworks people use, against torch.optim.RMSprop in the
same run: Hugging Face's `transformers.Trainer` (tiny GPT-2 from a config, float32 and bf16
autocast, gradient accumulation, a learning-rate schedule, a checkpoint resumed through the
Trainer's own files) and PyTorch Lightning (`configure_optimizers` with a scheduler, which steps
through `step(closure)`, and a checkpoint resumed). Nothing is downloaded.

The frameworks are the `frameworks` extra (`.ci/run` installs it; RMSPROP_EXT_REQUIRE_PEERS=1 turns
a missing one into an error instead of a skip). With torch's rounding (the default) the losses and
the final parameters must be torch's bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import rmsprop_ext
from conftest import HAS_TORCH
from helpers import needs as needs_extra
from helpers import torch_bits

pytestmark = [
    pytest.mark.needs_torch,
    pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch"),
    pytest.mark.spread_over_isas,
]

OPTIONS = {"lr": 3e-3, "alpha": 0.9, "momentum": 0.9, "centered": True, "weight_decay": 1e-4}
STEPS = 12
CHECKPOINT_STEP = 6


def needs(module: str) -> Any:
    return needs_extra(module, "frameworks")


def optimizer_classes() -> dict[str, Callable[..., Any]]:
    import torch

    return {"torch": torch.optim.RMSprop, "rmsprop_ext": rmsprop_ext.RMSprop}


def assert_same_bits(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Every tensor of two state dicts equal bit for bit."""
    import torch

    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        assert tensor.dtype == theirs[name].dtype, name
        assert torch.equal(torch_bits(tensor), torch_bits(theirs[name])), name


# Hugging Face transformers.Trainer


def tiny_gpt2() -> Any:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=97,
        n_positions=16,
        n_embd=32,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def token_batches() -> list[dict[str, Any]]:
    """24 sequences: with batches of 4 and 2 accumulated, an epoch is 3 optimizer steps, so the
    checkpoint at step 6 falls between epochs and the resumed run reads the same batches."""
    import torch

    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 97, (24, 16), generator=generator)
    return [{"input_ids": row, "labels": row} for row in tokens]


def run_trainer(
    tmp_path: Path,
    optimizer: str,
    bf16: bool,
    resume_from: Path | None = None,
) -> tuple[list[float], dict[str, Any]]:
    """Trains the tiny GPT-2 and returns the logged losses and the final parameters."""
    from transformers import Trainer, TrainingArguments, get_linear_schedule_with_warmup

    model = tiny_gpt2()
    opt = optimizer_classes()[optimizer](model.parameters(), **OPTIONS)
    scheduler = get_linear_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=STEPS)
    arguments = TrainingArguments(
        output_dir=str(tmp_path / optimizer),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=STEPS,
        logging_steps=1,
        save_steps=CHECKPOINT_STEP,
        save_strategy="steps",
        bf16=bf16,
        use_cpu=True,
        report_to=[],
        seed=0,
        data_seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=token_batches(),
        optimizers=(opt, scheduler),
    )
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return losses, {name: p.detach().clone() for name, p in model.named_parameters()}


@needs("transformers")
@needs("accelerate")
@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bf16-autocast"])
def test_hf_trainer_matches_torch_bitwise(tmp_path: Path, bf16: bool) -> None:
    torch_losses, torch_params = run_trainer(tmp_path, "torch", bf16)
    our_losses, our_params = run_trainer(tmp_path, "rmsprop_ext", bf16)
    assert len(our_losses) == STEPS
    assert our_losses == torch_losses
    assert_same_bits(our_params, torch_params)


@needs("transformers")
@needs("accelerate")
def test_hf_trainer_resume_from_checkpoint(tmp_path: Path) -> None:
    """The optimizer's state dict goes through the Trainer's checkpoint files (optimizer.pt, loaded
    into a fresh optimizer): the resumed run ends on the uninterrupted run's bits."""
    losses, params = run_trainer(tmp_path / "whole", "rmsprop_ext", bf16=False)
    checkpoint = tmp_path / "whole" / "rmsprop_ext" / f"checkpoint-{CHECKPOINT_STEP}"
    assert (checkpoint / "optimizer.pt").is_file()
    resumed_losses, resumed_params = run_trainer(
        tmp_path / "resumed", "rmsprop_ext", bf16=False, resume_from=checkpoint
    )
    # The Trainer keeps the first steps' log from the checkpoint and appends the resumed steps'.
    assert resumed_losses == losses
    assert_same_bits(resumed_params, params)


# PyTorch Lightning


def lightning_module(optimizer: str) -> Any:
    import lightning
    import torch

    class Regression(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(
                torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
            )
            self.losses: list[float] = []

        def training_step(self, batch: Any, batch_index: int) -> Any:
            inputs, targets = batch
            loss = torch.nn.functional.mse_loss(self.net(inputs), targets)
            self.losses.append(loss.item())
            return loss

        def configure_optimizers(self) -> Any:
            opt = optimizer_classes()[optimizer](self.parameters(), **OPTIONS)
            scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    return Regression()


def regression_batches() -> Any:
    """Three batches per epoch, not shuffled: the checkpoint at step 6 falls between epochs."""
    import torch

    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(48, 8, generator=generator)
    targets = inputs.sum(dim=1, keepdim=True).sin()
    dataset = torch.utils.data.TensorDataset(inputs, targets)
    return torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=False)


def run_lightning(
    tmp_path: Path, optimizer: str, resume_from: Path | None = None
) -> tuple[Any, list[Path]]:
    """Trains to STEPS, keeping a checkpoint every CHECKPOINT_STEP steps as users keep them (a
    ModelCheckpoint callback); returns the module and the checkpoints this run wrote."""
    import lightning

    module = lightning_module(optimizer)
    checkpoints = lightning.pytorch.callbacks.ModelCheckpoint(
        dirpath=tmp_path / optimizer, every_n_train_steps=CHECKPOINT_STEP, save_top_k=-1
    )
    trainer = lightning.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[checkpoints],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, regression_batches(), ckpt_path=str(resume_from) if resume_from else None)
    return module, sorted((tmp_path / optimizer).glob("*.ckpt"))


# Lightning 2.6 asks torch's pytree in a way torch 2.13 deprecates: not this package's warning.
PYTREE_DEPRECATION = "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"


@needs("lightning")
@pytest.mark.filterwarnings(PYTREE_DEPRECATION)
# The resumed run writes its checkpoints elsewhere, of which Lightning's callback warns.
@pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning")
def test_lightning_matches_torch_bitwise_and_resumes(tmp_path: Path) -> None:
    theirs, _ = run_lightning(tmp_path / "whole", "torch")
    ours, written = run_lightning(tmp_path / "whole", "rmsprop_ext")
    assert len(ours.losses) == STEPS
    assert ours.losses == theirs.losses
    assert_same_bits(ours.state_dict(), theirs.state_dict())

    (checkpoint,) = [path for path in written if f"step={CHECKPOINT_STEP}." in path.name]
    resumed, _ = run_lightning(tmp_path / "resumed", "rmsprop_ext", resume_from=checkpoint)
    assert resumed.losses == ours.losses[CHECKPOINT_STEP:]
    assert_same_bits(resumed.state_dict(), ours.state_dict())
