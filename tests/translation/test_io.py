"""save_translator / load_translator: bit-identical round trip, metadata, training-only state, bad files."""

import pytest
import torch

from translation import TRANSLATORS, create_translator, load_translator, save_translator
from translation.losses import GANCriterion

METADATA = {
    "image_size": 32,
    "normalization": "x * 2 - 1 of [0, 1] images",
    "domains": {"a": "jsrt", "b": "montgomery"},
    "checksums": {"a": "sha256:00", "b": "sha256:11"},
}


@pytest.mark.parametrize("name", sorted(TRANSLATORS))
def test_save_load_apply_is_bit_identical(tmp_path, name):
    t = create_translator(name, "tiny")
    a, b = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
    t.discriminator_losses(a, b)  # fills CycleGAN's pools: training-only state that must not be saved
    if hasattr(t, "update_domain_style"):
        t.update_domain_style(b, "b")
        t.update_domain_style(a, "a")
    t.eval()
    path = save_translator(t, tmp_path / "sub" / "translator.pt", METADATA)
    loaded, metadata = load_translator(path)
    assert type(loaded) is type(t) and loaded.config == t.config and metadata == METADATA
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded.a_to_b(a), t.a_to_b(a))
        assert torch.equal(loaded.b_to_a(b), t.b_to_a(b))
    for key, value in t.state_dict().items():
        if not key.endswith("_extra_state"):
            assert torch.equal(loaded.state_dict()[key], value), key
    if name == "cyclegan":
        assert len(loaded.pool_a) == 0 and len(t.pool_a) == 2


def test_config_with_enum_and_kwargs_round_trips(tmp_path):
    t = create_translator("munit", "tiny", gan_mode=GANCriterion.HINGE, lambda_cycle=2)
    assert t.config["gan_mode"] == "hinge" and type(t.config["gan_mode"]) is str
    loaded, _ = load_translator(save_translator(t, tmp_path / "m.pt", {}))
    assert loaded.config == t.config and loaded.gan_mode is GANCriterion.HINGE and loaded.lambda_cycle == 2.0


def test_only_the_file_is_written(tmp_path):
    save_translator(create_translator("cyclegan", "tiny"), tmp_path / "t.pt", {})
    assert [p.name for p in tmp_path.iterdir()] == ["t.pt"]  # atomic: no temporary file left behind


def test_bad_files_have_clear_errors(tmp_path):
    t = create_translator("cyclegan", "tiny")
    with pytest.raises(FileNotFoundError, match="translator file .*missing.pt does not exist"):
        load_translator(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pt is unreadable.*save it again"):
        load_translator(garbage)
    truncated = tmp_path / "truncated.pt"
    save_translator(t, truncated, {})
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.pt is unreadable"):
        load_translator(truncated)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": t.state_dict()}, other)
    with pytest.raises(ValueError, match="expected a translator file with format 'cxr-transfer-translator'"):
        load_translator(other)
    mismatched = tmp_path / "mismatched.pt"
    save_translator(t, mismatched, {})
    payload = torch.load(mismatched, weights_only=True)
    payload["config"]["base_channels"] = 4
    torch.save(payload, mismatched)
    with pytest.raises(ValueError, match="mismatched.pt does not fit its config"):
        load_translator(mismatched)
    with pytest.raises(ValueError, match="expected JSON-able metadata"):
        save_translator(t, tmp_path / "x.pt", {"size": torch.zeros(2)})
    with pytest.raises(ValueError, match="expected metadata as a dict"):
        save_translator(t, tmp_path / "x.pt", [1])
    with pytest.raises(TypeError, match="expected a Translator, got Linear"):
        save_translator(torch.nn.Linear(1, 1), tmp_path / "x.pt", {})
