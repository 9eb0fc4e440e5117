"""The three training stages; each writes its weights into ``out`` and returns what it measured."""
from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from comfyui_sae_steering.nodes.tiny_world import models, world
from comfyui_sae_steering.nodes.tiny_world.text_encoder import TinyWorldTextModel, TinyWorldTokenizer

from .flux import train_flux
from .vae import build_taesd, images_to_tensor, match_code_spread, sharpen_decoder, train_factored_vae

SAE_WIDTH, SAE_K = 512, 8
SAMPLING_STEPS = 20


def _flux_latent_format():
    import comfy.latent_formats
    return comfy.latent_formats.Flux()


def stage_vae(out, args, seeds, progress) -> dict:
    model, report = train_factored_vae(args.vae_steps, batch=8, seed=seeds["vae"], progress=progress)
    images, _ = world.dataset(512, seed=seeds["vae_stats"])
    # measured on the weights as the fp16 file holds them, so this part can be rerun from the file alone
    model.load_state_dict({k: v.to(torch.float16).float() for k, v in model.state_dict().items()})
    report["colour_code_factor"] = match_code_spread(model, images_to_tensor(images))
    with torch.no_grad():
        raw = model.taesd_encoder(images_to_tensor(images))
        mean, std = float(raw.mean()), float(raw.std())
        reconstruction = model.taesd_decoder(raw).clamp(0, 1)
        report["reconstruction_mse"] = float((reconstruction - images_to_tensor(images)).pow(2).mean())
        # ComfyUI: latent = raw / vae_scale + vae_shift; FLUX reads (latent - shift) * scale. Chosen so the
        # model sees (raw - mean) / std: unit-variance latents, like the real FLUX VAE gives after process_in.
        fmt = _flux_latent_format()
        model.vae_scale.fill_(fmt.scale_factor * std)
        model.vae_shift.fill_(fmt.shift_factor - mean / (fmt.scale_factor * std))
    report.update(latent_mean=mean, latent_std=std)
    save_file({k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}, str(out / models.VAE_FILE))
    return report


def stage_vae_decoder(out, args, seeds, progress) -> dict:
    """The decoder alone, sharpened on whole images (``vae.sharpen_decoder``); the latents stay the same."""
    import comfy.utils

    model = build_taesd()
    model.load_state_dict({k: v.float() for k, v in comfy.utils.load_torch_file(str(out / models.VAE_FILE)).items()})
    report = sharpen_decoder(model, args.decoder_steps, batch=16, seed=seeds["vae_decoder"], progress=progress)
    images, _ = world.dataset(512, seed=seeds["vae_stats"])
    with torch.no_grad():
        x = images_to_tensor(images)
        report["reconstruction_mse"] = float((model.taesd_decoder(model.taesd_encoder(x)).clamp(0, 1) - x).pow(2).mean())
    save_file({k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}, str(out / models.VAE_FILE))
    return report


def encode_images(vae, images) -> torch.Tensor:
    """Pixels -> what FLUX reads: ComfyUI's own ``VAE.encode`` then the latent format's ``process_in``."""
    fmt = _flux_latent_format()
    with torch.inference_mode():  # as ComfyUI runs its nodes: no autograd graph kept across chunks
        chunks = [vae.encode(torch.from_numpy(images[i:i + 64]).float().div(255.0)) for i in range(0, len(images), 64)]
        return fmt.process_in(torch.cat(chunks)).clone()


def token_ids(prompts: list[str]) -> torch.Tensor:
    tokenizer = TinyWorldTokenizer()
    return torch.tensor([[pair[0] for pair in tokenizer.tokenize_with_weights(p)[0]] for p in prompts])


def stage_flux(out, args, seeds, progress, resume: bool = False) -> dict:
    """FLUX and the text encoder from scratch (``resume``: go on from the files already in ``out``)."""
    import comfy.sd
    import comfy.utils

    load = lambda name: comfy.utils.load_torch_file(str(out / name), safe_load=True)  # noqa: E731
    vae = comfy.sd.VAE(sd={k: v.float() for k, v in load(models.VAE_FILE).items()})
    images, scenes = world.dataset(args.flux_images, seed=seeds["flux_data"] + (1 if resume else 0))
    latents = encode_images(vae, images)
    ids = token_ids([s.prompt for s in scenes])
    seed = seeds["flux_more" if resume else "flux"]
    torch.manual_seed(seed)
    text_model = TinyWorldTextModel()
    if resume:
        flux = models.build_flux(load(models.FLUX_FILE))
        text_model.load_state_dict(load(models.TEXT_ENCODER_FILE))
    else:
        flux = models.build_flux()
        _init_flux(flux.model.diffusion_model, seed)
        torch.nn.init.normal_(text_model.word.weight, std=1.0)
        torch.nn.init.normal_(text_model.position, std=0.1)
    report = train_flux(flux, text_model, latents, ids, steps=args.flux_steps, batch=64, seed=seed,
                        lr=1e-3 if resume else 2e-3, progress=progress)
    save_file({k: v.contiguous() for k, v in flux.model.diffusion_model.state_dict().items()},
              str(out / models.FLUX_FILE))
    save_file({k: v.contiguous() for k, v in text_model.state_dict().items()}, str(out / models.TEXT_ENCODER_FILE))
    report.update(images=args.flux_images, latent_std=float(latents.std()))
    return report


def stage_flux_more(out, args, seeds, progress) -> dict:
    """More of the same at half the learning rate, on 4000 other scenes: sharper shapes."""
    return stage_flux(out, args, seeds, progress, resume=True)


def _init_flux(diffusion_model, seed: int):
    """ComfyUI leaves the weights empty: fan-in normal for matrices, zeros for biases, ones for norm gains;
    the final layer starts at zero (the usual DiT choice: the untrained model predicts 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in diffusion_model.named_parameters():
            if name.endswith("scale"):
                param.fill_(1.0)
            elif param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) / param.shape[-1] ** 0.5)
            else:
                param.zero_()
        for param in diffusion_model.final_layer.linear.parameters():
            param.zero_()


@torch.no_grad()  # sampling needs no graph (training turns it on for itself); restored on return
def stage_sae(out, args, seeds, progress) -> dict:
    """One TopK SAE per site in ``models.SAE_SITES``, trained on activations recorded during real sampling of
    every prompt, then labelled by contrasting prompts (``label_features``)."""
    from comfyui_sae_steering.nodes.sites import tap as site_tap
    from comfyui_sae_steering.sae.formats import pack
    from comfyui_sae_steering.sae.train import train_topk_sae

    from ..record import record_site

    flux, clip, _, _ = _load_without_sae(out)
    prompts = world.all_prompts()
    conditionings = [clip.encode_from_tokens_scheduled(clip.tokenize(p)) for p in prompts for _ in range(args.sae_seeds)]
    report = {}
    for i, (sae_file, (site, block)) in enumerate(models.SAE_SITES.items()):
        runs = record_site(site_tap, flux, site, block, conditionings, world.IMAGE_SIZE, world.IMAGE_SIZE,
                           SAMPLING_STEPS, seed=seeds["sae"])
        activations = torch.cat(runs)
        sae, train_report = train_topk_sae(activations, d_sae=SAE_WIDTH, k=SAE_K, steps=args.sae_steps, lr=2e-3,
                                           seed=seeds["sae"] + i, hook=f"{site}.{block}")
        pack.write(sae, out / sae_file)
        labels, scores = label_features(sae, runs, prompts, args.sae_seeds)
        (out / sae_file.replace(".safetensors", ".labels.json")).write_text(
            json.dumps({str(k): v for k, v in sorted(labels.items())}, indent=1) + "\n")
        report[sae_file] = {"site": site, "block": block, "d_sae": SAE_WIDTH, "k": SAE_K,
                            "tokens": activations.shape[0], "fvu": train_report.fvu,
                            "dead_fraction": train_report.dead_fraction, "labels": scores}
        progress(i, len(models.SAE_SITES), f"{sae_file}: FVU {train_report.fvu:.3f}")
    return report


def _load_without_sae(out):
    import comfy.sd
    import comfy.utils

    from comfyui_sae_steering.nodes.tiny_world.text_encoder import load_clip

    load = lambda name: comfy.utils.load_torch_file(str(out / name), safe_load=True)  # noqa: E731
    return (models.build_flux(load(models.FLUX_FILE)), load_clip(load(models.TEXT_ENCODER_FILE)),
            comfy.sd.VAE(sd={k: v.float() for k, v in load(models.VAE_FILE).items()}), None)


def label_features(sae, runs, prompts, per_prompt) -> tuple[dict[int, str], dict]:
    """Name features by contrasting prompts: for each colour and shape word, the feature whose mean activation
    on prompts with that word most exceeds its mean on the others, in units of its overall spread."""
    means = torch.stack([sae.encode(run).float().mean(0) for run in runs])  # [samplings, d_sae]
    words = [p.split()[1:] for p in prompts for _ in range(per_prompt)]
    spread = means.std(0) + 1e-6
    labels, scores = {}, {}
    for word in [*world.COLOURS, *world.SHAPES]:
        has = torch.tensor([word in w for w in words])
        contrast = (means[has].mean(0) - means[~has].mean(0)) / spread
        contrast[list(labels)] = -float("inf")  # one label per feature
        best = int(contrast.argmax())
        labels[best] = word
        scores[word] = {"feature": best, "contrast": round(float(contrast[best]), 3),
                        "mean_with": round(float(means[has, best].mean()), 4),
                        "mean_without": round(float(means[~has, best].mean()), 4)}
    return labels, scores
