"""The diffusion repair model on a tiny random-weight Stable Diffusion + ControlNet folder,
built from configs here (nothing is downloaded): the code path is the real one, the
quality is not what is tested."""

import dataclasses
import itertools
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clirun import plugin_environment, run_cli
from methods.test_gaussianobject import TINY

from sparse3d.engine.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from sparse3d.methods.gaussianobject.config import RepairConfig
from sparse3d.methods.gaussianobject.repair_training import (
    check_repair_config,
    load_repair_model,
    repair_model,
)
from sparse3d.reconstruction.repair.diffusion import (
    DiffusionRepair,
    DiffusionRepairConfig,
)

# Small enough for milliseconds per pass: latents of 8 x 8 for 16-pixel images.
SMALL = DiffusionRepairConfig(lora_rank=4, ddim_steps=5, resolution=16)


def write_tiny_stable_diffusion(folder: Path) -> Path:
    """A random-weight SD 1.5 layout (unet, vae, text_encoder, tokenizer, scheduler,
    controlnet) of a few ten-thousand parameters, saved with diffusers / transformers."""
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, cross_attention_dim=16, attention_head_dim=2,
        norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    unet.save_pretrained(folder / "unet")
    # Two VAE levels (a 2x latent) need a ControlNet hint encoder of two levels too.
    ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16)).save_pretrained(folder / "controlnet")
    AutoencoderKL(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    ).save_pretrained(folder / "vae")
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(folder / "scheduler")
    # The files of SD 1.5's tokenizer/, with a vocabulary of single characters (no merges).
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz0123456789":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    tokenizer = folder / "tokenizer"
    tokenizer.mkdir()
    (tokenizer / "vocab.json").write_text(json.dumps(vocab))
    (tokenizer / "merges.txt").write_text("#version: 0.2\n")
    (tokenizer / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 16}))
    CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )).save_pretrained(folder / "text_encoder")
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and a second thread that waits for a core
    another process holds makes each pass up to 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    """The tiny folder (read-only: copy it before corrupting it)."""
    return write_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny_sd"))


def build(folder: Path, config: DiffusionRepairConfig = SMALL) -> DiffusionRepair:
    torch.manual_seed(0)  # the LoRA adapters' initialisation
    return DiffusionRepair(folder, config)


def images(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed))


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "remove, expected",
    [
        ("", "no such folder"),
        ("vae", "vae: missing"),
        ("unet/diffusion_pytorch_model.safetensors", "unet: no weights file"),
        ("text_encoder/model.safetensors", "text_encoder: no weights file"),
        ("scheduler/scheduler_config.json", "scheduler: no config file"),
        ("controlnet/config.json", "controlnet: no config file"),
    ],
)
def test_a_missing_folder_or_file_is_a_one_line_error_naming_it(tiny_sd, tmp_path, remove, expected):
    folder = tmp_path / "sd"
    if remove:
        shutil.copytree(tiny_sd, folder)
        target = folder / remove
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError) as err:
        DiffusionRepair(folder, SMALL)
    message = str(err.value)
    assert str(folder) in message and expected in message and "\n" not in message


def test_a_separate_controlnet_folder_is_used_and_checked(tiny_sd, tmp_path):
    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd, folder, ignore=shutil.ignore_patterns("controlnet"))
    with pytest.raises(FileNotFoundError, match="controlnet: missing; repair.pretrained"):
        DiffusionRepair(folder, SMALL)
    with pytest.raises(FileNotFoundError, match="elsewhere: missing; repair.diffusion.controlnet"):
        DiffusionRepair(folder, dataclasses.replace(SMALL, controlnet=tmp_path / "elsewhere"))
    model = DiffusionRepair(folder, dataclasses.replace(SMALL, controlnet=tiny_sd / "controlnet"))
    assert model.controlnet.config.conditioning_embedding_out_channels == [8, 16]


def test_the_optional_packages_are_imported_only_by_the_model(tiny_sd, monkeypatch):
    code = "import sys, sparse3d.methods.gaussianobject; print(sorted({'peft', 'transformers'} & set(sys.modules)))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"
    monkeypatch.setitem(sys.modules, "peft", None)  # as if not installed
    with pytest.raises(ImportError, match=r"needs peft, which is not installed: pip install 'sparse3d\[diffusion\]'"):
        DiffusionRepair(tiny_sd, SMALL)


def test_loading_opens_no_network_connection(tiny_sd, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    build(tiny_sd)


def test_only_the_adapters_train_and_the_base_stays(tiny_sd):
    model = build(tiny_sd)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert any(n.startswith("unet.") for n in trainable) and any(n.startswith("controlnet.") for n in trainable)
    assert not any(n.startswith("vae.") for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss = model.training_loss(images(2, 16, 16, 0), images(2, 16, 16, 1), generator(0))["eps_mse"]
    loss.backward()
    optimizer.step()
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if n not in trainable)
    assert any(not torch.equal(before[n], after[n]) for n in trainable)


def test_training_loss_falls_on_a_fixed_pair(tiny_sd):
    model = build(tiny_sd)
    corrupted, clean = images(2, 16, 16, 0), images(2, 16, 16, 1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        # The same draws every step: the loss is one function of the adapters, minimised.
        loss = model.training_loss(corrupted, clean, generator(0))["eps_mse"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(b < a for a, b in itertools.pairwise(losses)), losses  # falls at every step


def test_repair_is_a_function_of_the_generator_with_the_input_shape_and_range(tiny_sd):
    model = build(tiny_sd)
    renders = images(3, 20, 12, 2)  # not square and larger than resolution: padded to 20 x 20
    first, weights = model.repair(renders, generator(5))
    again, weights_again = model.repair(renders, generator(5))
    other, _ = model.repair(renders, generator(6))
    assert first.shape == renders.shape and weights.shape == (3,) and first.dtype == weights.dtype == torch.float32
    assert torch.equal(first, again) and torch.equal(weights, weights_again)
    assert not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1
    assert ((weights > 0) & (weights <= 1)).all()  # strengths >= 0.1 of 5 steps: every image is repaired


def test_strength_sets_the_steps_and_the_weight(tiny_sd):
    renders = images(2, 16, 16, 3)
    below_one_step = build(tiny_sd, dataclasses.replace(SMALL, min_strength=0.0, max_strength=0.19))
    untouched, weights = below_one_step.repair(renders, generator(0))
    assert torch.equal(untouched, renders) and torch.equal(weights, torch.zeros(2))  # floor(0.19 x 5) = 0 steps
    model = build(tiny_sd, dataclasses.replace(SMALL, min_strength=1.0))
    repaired, weights = model.repair(renders, generator(0))
    full = 1.0 - model.scheduler.alphas_cumprod[model.scheduler.timesteps[0]]  # noised to the schedule's start
    assert not torch.equal(repaired, renders)
    torch.testing.assert_close(weights, full.repeat(2))


def test_the_state_is_the_adapters_and_round_trips_through_load_repair_model(tiny_sd, tmp_path):
    config = RepairConfig(kind="diffusion", pretrained=tiny_sd, diffusion=SMALL)
    torch.manual_seed(0)
    model = repair_model(config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.training_loss(images(2, 16, 16, 0), images(2, 16, 16, 1), generator(0))["eps_mse"].backward()
    optimizer.step()
    state = model.state_dict()
    assert state.keys() == {n for n, p in model.named_parameters() if p.requires_grad}
    parent = torch.nn.ModuleDict({"net": model})  # as the trainer saves and resumes a method holding it
    assert parent.state_dict().keys() == {f"net.{k}" for k in state}
    parent.load_state_dict(parent.state_dict())
    save_checkpoint(tmp_path / "repair_model", 1, {"method": {f"net.{k}": v for k, v in state.items()}}, keep=0)

    torch.manual_seed(1)  # other adapters at first: the checkpoint's must replace them
    loaded = load_repair_model(tmp_path, config, torch.device("cpu"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in state.items())
    model.eval()
    renders = images(2, 16, 16, 4)
    assert torch.equal(model.repair(renders, generator(3))[0], loaded.repair(renders, generator(3))[0])


def test_the_config_check_asks_for_a_folder_and_the_kind(tiny_sd, tmp_path):
    with pytest.raises(ValueError, match="repair.kind=diffusion needs repair.pretrained=DIR"):
        check_repair_config(RepairConfig(kind="diffusion"))
    with pytest.raises(ValueError, match="repair.kind=embedded"):
        check_repair_config(RepairConfig(pretrained=tiny_sd))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        check_repair_config(RepairConfig(kind="diffusion", pretrained=tmp_path / "absent"))
    check_repair_config(RepairConfig(kind="diffusion", pretrained=tiny_sd))
    with pytest.raises(ValueError, match="min_strength=0.5 is above max_strength=0.2"):
        DiffusionRepairConfig(min_strength=0.5, max_strength=0.2)


def test_gaussianobject_runs_with_the_diffusion_repair_model(tiny_sd, tmp_path):
    from sparse3d.synthetic.objects.generator import (
        SyntheticObjectsConfig,
        write_synthetic_objects,
    )

    objects = SyntheticObjectsConfig(objects=("capsule",), resolution=32, num_test_views=4, supersampling=1)
    data = write_synthetic_objects(tmp_path / "objects", objects)[0]
    run = tmp_path / "run"
    diffusion = ["repair.kind=diffusion", f"repair.pretrained={tiny_sd}", "repair.diffusion.lora_rank=4",
                 "repair.diffusion.ddim_steps=4", "repair.diffusion.resolution=16"]
    env = plugin_environment()
    result = run_cli("sparse3d-train", "method=gaussianobject", f"data={data}", f"output={run}", *TINY, *diffusion,
                     env=env)
    assert result.returncode == 0, result.stderr
    assert (run / "point_cloud.ply").is_file()
    state = load_checkpoint(list_checkpoints(run / "repair_model")[-1][1])["method"]
    assert state and all(".lora_" in k for k in state)  # the frozen base is not in the checkpoint
    evaluated = run_cli("sparse3d-eval", f"run={run}", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "psnr" in json.loads((run / "eval.json").read_text())
