"""``cxr-transfer translate``: train unpaired image-to-image translators and apply them to new image folders.

Thin layer: options are validated by click, a frozen :class:`translation.training.TranslationConfig` is built, and
one library function runs (:func:`translation.training.train_translator`); ``apply`` loads a file written by
:func:`translation.save_translator` and translates a folder in batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import torch

from runtime import atomic_write_json, config_to_dict, progress, resolve_device, seed_everything
from runtime.distributed import close_distributed, init_distributed, is_main_process
from runtime.preflight import check_divisible, check_memory, check_writable, count_images, dataset_bytes
from runtime.store import affine, on_device, take_rows
from segmentation.data.dataset import check_loadable, load_dataset
from segmentation.data.preprocessing import resize_images
from segmentation.data.formats import SOURCE_SUFFIXES, list_files, read_source_image
from segmentation.data.io import DataError, write_png

_DIR = click.Path(exists=True, file_okay=False, dir_okay=True, path_type=Path)
_FILE = click.Path(exists=True, file_okay=True, dir_okay=False, path_type=Path)
_OUT = click.Path(file_okay=False, dir_okay=True, path_type=Path)


def _translator_names() -> list[str]:
    from translation import TRANSLATORS

    return sorted(TRANSLATORS)


def load_image_folder(folder: Path, size: int) -> tuple[torch.Tensor, list[str]]:
    """Images of ``folder`` as ``[N, 1, size, size]`` in ``[0, 1]`` and their ids.

    A prepared dataset folder (``images/<id>.png``) is read with :func:`segmentation.data.dataset.load_dataset`
    without masks; any other folder is read file by file (PNG, JPEG, TIFF, DICOM, JSRT ``.IMG``), each image scaled
    by its significant bits and resized anti-aliased.

    Raises:
        DataError: for a folder without images or an unreadable file (names the file).
    """
    if (folder / "images").is_dir():
        data = load_dataset(folder, size=size, masks=False)
        return data.images, list(data.ids)
    files = list_files(folder, SOURCE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images (expected images/<id>.png or image files such as .png, .dcm)")
    images = [resize_images(_to_unit(read_source_image(p)), (size, size)) for p in files]
    return torch.cat(images).clamp_(0, 1), [p.stem for p in files]


def _to_unit(source) -> torch.Tensor:  # noqa: ANN001 - a formats.SourceImage
    top = float((1 << source.bits_stored) - 1)
    return torch.from_numpy(source.array.astype(np.float32) / top)[None, None].clamp_(0, 1)


def _held_out(images: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split off a seeded held-out share (at least 2 images, when at least 4 remain for training)."""
    n = images.shape[0]
    k = int(round(fraction * n))
    if fraction == 0 or n < 6:
        return images, None
    k = max(2, k)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return take_rows(images, order[k:]), take_rows(images, order[:k])


@click.group(name="translate")
def translate() -> None:
    """Unpaired image-to-image translation (CycleGAN, UNIT, MUNIT) between two image folders.

    \b
    Examples:
      cxr-transfer translate train --a data/montgomery --b data/jsrt --model cyclegan --size 256 --run-dir runs/m2j
      cxr-transfer translate train --a data/montgomery --b data/jsrt --run-dir runs/m2j --resume
      cxr-transfer translate apply --translator runs/m2j/translator.pt --direction a2b --images new/ --out out/
    """


@translate.command(name="train")
@click.option("--a", "dir_a", type=_DIR, required=True,
              help="Domain A: a prepared dataset folder (images/<id>.png) or a folder of images.")
@click.option("--b", "dir_b", type=_DIR, required=True, help="Domain B, the same way.")
@click.option("--model", type=click.Choice(_translator_names()), default="cyclegan", show_default=True,
              help="Translator architecture.")
@click.option("--preset", type=click.Choice(["default", "tiny"]), default="default", show_default=True,
              help="default: the paper's networks; tiny: 2+2-layer generators, small discriminators (CPU).")
@click.option("--size", type=click.IntRange(min=8), default=256, show_default=True,
              help="Images are resized to size x size (a multiple of the translator's divisor).")
@click.option("--iterations", type=click.IntRange(min=1), default=20000, show_default=True,
              help="Optimisation steps (learning rate constant for the first half, then linear to 0).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-4, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--held-out", type=click.FloatRange(0, 0.5), default=0.1, show_default=True,
              help="Share of each domain held out for the convergence figures (histogram distance, KID).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--eval-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Steps between held-out evaluations; 0 = once per epoch.")
@click.option("--sync-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Steps whose losses are read back and checked by the divergence guard at once "
                   "(10 keeps a GPU busy).")
@click.option("--run-dir", type=_OUT, required=True,
              help="Run folder: config.json, checkpoints/, tb/, metrics.json, translator.pt.")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir exactly where it stopped.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--no-amp", is_flag=True, help="No bf16 autocast on CUDA.")
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train(dir_a: Path, dir_b: Path, model: str, preset: str, size: int, iterations: int, batch_size: int, lr: float,
          seed: int, held_out: float, checkpoint_every: int, eval_every: int, sync_every: int, run_dir: Path,
          resume: bool, device: str, no_amp: bool, dry_run: bool, quiet: bool) -> None:
    """Train a translator between the images of --a and --b.

    \b
    Examples:
      cxr-transfer translate train --a data/montgomery --b data/jsrt --run-dir runs/m2j
      cxr-transfer translate train --a data/montgomery --b data/jsrt --preset tiny --size 128 \\
          --iterations 2000 --batch-size 4 --run-dir runs/m2j_tiny --dry-run
    """
    from translation import create_translator
    from translation.training import TranslationConfig, train_translator

    try:
        config = TranslationConfig(
            iterations=iterations, batch_size=batch_size, lr=lr, seed=seed, amp=not no_amp,
            checkpoint_every=checkpoint_every, eval_every=eval_every, sync_every=sync_every,
            domain_a=dir_a.resolve().name, domain_b=dir_b.resolve().name, progress=not quiet)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    resolved = {"model": model, "preset": preset, "size": size, "a": str(dir_a), "b": str(dir_b),
                "held_out": held_out, "run_dir": str(run_dir), "resume": resume, "device": device,
                "config": config_to_dict(config)}
    if dry_run:
        click.echo(json.dumps(resolved, indent=2))
        return
    try:
        target = init_distributed(device)  # under torchrun: join the group, take cuda:LOCAL_RANK (or the CPU)
        check_writable(run_dir, "--run-dir")
        held = sorted((run_dir / "checkpoints").glob("step_*.pt")) if (run_dir / "checkpoints").is_dir() else []
        if resume and not held:
            raise ValueError(f"--resume: {run_dir / 'checkpoints'} holds no checkpoint, so there is no run to "
                             "continue; drop --resume to start one")
        if not resume and held:
            raise ValueError(f"--run-dir {run_dir} already holds a run ({held[-1].name}); pass --resume to continue "
                             "it or choose a new --run-dir")
        for folder in (dir_a, dir_b):
            if (folder / "images").is_dir():  # a prepared folder: streamed when large (memory for one cache chunk)
                check_loadable(count_images(folder), size, 0, f"loading {folder} at --size {size}", "lower --size")
            else:  # image files of any format are read whole
                check_memory(dataset_bytes(len(list(folder.iterdir())), size, 2), f"loading {folder} at --size {size}",
                             "lower --size")
        seed_everything(seed)
        translator = create_translator(model, preset=preset).to(target)
        check_divisible(size, int(getattr(translator, "required_divisor", 1)), "--size", f"{model} ({preset})")
    except (ValueError, RuntimeError) as err:
        raise click.ClickException(str(err)) from err
    try:
        images_a, _ = load_image_folder(dir_a, size)
        images_b, _ = load_image_folder(dir_b, size)
    except DataError as err:
        raise click.ClickException(str(err)) from err
    train_a, held_a = _held_out(affine(images_a, 2, -1), held_out, seed)
    train_b, held_b = _held_out(affine(images_b, 2, -1), held_out, seed + 1)
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "command.json", resolved)
    try:
        result = train_translator(translator, on_device(train_a, target), on_device(train_b, target), config,
                                  run_dir, resume=resume, held_out_a=None if held_a is None else on_device(held_a, target),
                                  held_out_b=None if held_b is None else on_device(held_b, target))
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    main = is_main_process()
    close_distributed()
    if not main:  # rank 0 alone reports, as it alone wrote
        return
    last = result.history[-1] if result.history else {}
    figures = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k.startswith(("hist/", "kid/")))
    click.echo(f"trained {model} for {result.steps} steps in {result.seconds:.1f} s; {figures}")
    if result.rollbacks:
        click.echo(f"divergence guard rolled back {len(result.rollbacks)} time(s); see {run_dir / 'train.log'}")
    click.echo(f"saved {result.translator_path}")


@translate.command(name="apply")
@click.option("--translator", "translator_file", type=_FILE, required=True,
              help="A translator file written by `translate train` (run-dir/translator.pt).")
@click.option("--direction", type=click.Choice(["a2b", "b2a"]), required=True,
              help="a2b translates domain A images to look like B; b2a the reverse.")
@click.option("--images", "images_dir", type=_DIR, required=True,
              help="Folder of images (PNG, JPEG, TIFF; DICOM with pydicom), or a prepared dataset folder.")
@click.option("--out", type=_OUT, required=True, help="Output folder: <id>.png at each input's size and bit depth.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Files read at a time; those of equal size are translated together.")
@click.option("--tile", type=click.IntRange(min=1), default=None,
              help="Translate images larger than N x N in N x N tiles (a multiple of the translator's divisor) "
                   "with feathered seams, for images too large for memory; tiles of at least the training size keep "
                   "instance-norm statistics close to training's. Default: whole images.")
@click.option("--overlap", type=click.IntRange(min=0), default=32, show_default=True,
              help="Pixels shared by neighbouring tiles (with --tile).")
@click.option("--resize-to-training-size", "resize", is_flag=True,
              help="Former behaviour: resize each image to the training size, translate, resize back (blurs "
                   "larger images).")
@click.option("--device", default="auto", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def apply(translator_file: Path, direction: str, images_dir: Path, out: Path, batch_size: int, tile: int | None,
          overlap: int, resize: bool, device: str, quiet: bool) -> None:
    """Translate a folder of new images with a saved translator, at each image's own size.

    Each image is scaled to [-1, 1] and translated at its own size by the fully convolutional generator
    (translation.translate_image): padded by reflection to a multiple of the translator's
    divisor and cropped back, whole or, with --tile, in overlapping tiles blended across the seams. Files are read
    --batch-size at a time and those of equal size translated as one batch. With --resize-to-training-size each
    image is instead resized (anti-aliased) to the training size, translated and resized back. Outputs are PNG
    (8-bit, or 16-bit for deeper sources), written atomically.

    \b
    Examples:
      cxr-transfer translate apply --translator runs/m2j/translator.pt --direction a2b --images new_site/ --out out/
      cxr-transfer translate apply --translator runs/m2j/translator.pt --direction a2b --images big/ --out out/ \\
          --tile 512 --overlap 64
    """
    from translation import load_translator
    from translation.inference import check_tiling

    try:
        check_writable(out, "--out")
        target = resolve_device(device)
        translator, metadata = load_translator(translator_file, map_location=target)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    divisor = int(getattr(translator, "required_divisor", 1))
    size = metadata.get("image_size")
    if resize and not size:
        raise click.ClickException(f"{translator_file}: no image_size in its metadata, needed by "
                                   "--resize-to-training-size; save it with train_translator or drop the option")
    size = (int(size[0]), int(size[1])) if resize else None
    if tile is not None and resize:
        raise click.ClickException("--tile and --resize-to-training-size exclude each other: the training size "
                                   "already bounds memory; drop one")
    try:
        check_tiling(divisor, tile, overlap)
    except ValueError as err:
        raise click.ClickException(f"--tile {tile} --overlap {overlap} for {translator_file.name}: {err}") from err
    folder = images_dir / "images" if (images_dir / "images").is_dir() else images_dir
    try:
        files = list_files(folder, SOURCE_SUFFIXES)
    except DataError as err:
        raise click.ClickException(str(err)) from err
    if not files:
        raise click.ClickException(f"{folder}: no images to translate (expected .png, .jpg, .tif, .dcm, ...)")
    fn = translator.a_to_b if direction == "a2b" else translator.b_to_a
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    for start in progress(range(0, len(files), batch_size), desc="translate", enabled=not quiet):
        chunk = files[start:start + batch_size]
        try:
            sources = [read_source_image(p) for p in chunk]
        except DataError as err:
            raise click.ClickException(str(err)) from err
        if resize:
            fakes = _translate_resized(fn, sources, size, target)
        else:
            fakes = _translate_native(fn, sources, divisor, tile, overlap, target)
        for path, source, image in zip(chunk, sources, fakes):
            deep = source.bits_stored > 8
            array = np.round(image * (65535 if deep else 255)).astype(np.uint16 if deep else np.uint8)
            write_png(out / f"{path.stem}.png", array)
            done += 1
    click.echo(f"translated {done} image(s) {direction} with {translator_file.name} into {out}")


def _translate_resized(fn: Callable[[torch.Tensor], torch.Tensor], sources: list, size: tuple[int, int],
                       target: torch.device) -> list[np.ndarray]:
    """The former ``apply``: resize to ``size``, translate as one batch, resize back; ``[H, W]`` arrays in [0, 1]."""
    batch = torch.cat([resize_images(_to_unit(s), size) for s in sources]) * 2 - 1
    with torch.no_grad():
        fake = fn(batch.to(target)).float().cpu()
    return [resize_images(((image + 1) / 2)[None], tuple(source.array.shape))[0, 0].clamp(0, 1).numpy()
            for source, image in zip(sources, fake)]


def _translate_native(fn: Callable[[torch.Tensor], torch.Tensor], sources: list, divisor: int, tile: int | None,
                      overlap: int, target: torch.device) -> list[np.ndarray]:
    """Translate at each image's own size, equal sizes as one batch; ``[H, W]`` arrays in [0, 1], in input order."""
    from translation.inference import translate_image

    groups: dict[tuple[int, ...], list[int]] = {}
    for i, source in enumerate(sources):
        groups.setdefault(tuple(source.array.shape), []).append(i)
    results: list[np.ndarray | None] = [None] * len(sources)
    for members in groups.values():
        batch = torch.cat([_to_unit(sources[i]) for i in members]) * 2 - 1
        fake = translate_image(fn, batch.to(target), divisor, tile=tile, overlap=overlap).float().cpu()
        for i, image in zip(members, fake):
            results[i] = ((image[0] + 1) / 2).clamp(0, 1).numpy()
    return results
