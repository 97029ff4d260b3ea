"""Bad regularizer settings are rejected before training with one line naming the key; every
conf/reg file is a well-formed, documented option."""

from __future__ import annotations

import importlib

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import CONF, FAST, cli, conf_options

REG = conf_options("reg")

BAD = [
    ("rdrop", "alpha=-1", "reg.rdrop.alpha"),
    ("fgm", "eps=-0.5", "reg.fgm.eps"),
    ("fgm", "eps=0", "reg.fgm.eps"),
    ("fgm", "norm=l1", "reg.fgm.norm"),
    ("pgd", "K=0", "reg.pgd.K"),
    ("pgd", "alpha=-1", "reg.pgd.alpha"),
    ("pgd", "K=1.5", "reg.pgd.K"),
    ("vat", "xi=-1", "reg.vat.xi"),
    ("vat", "eps=-1", "reg.vat.eps"),
    ("vat", "iters=0", "reg.vat.iters"),
    ("gradpen", "eps=-1", "reg.gradpen.eps"),
    ("paramgradpen", "gamma=-0.1", "reg.paramgradpen.gamma"),
    ("flooding", "b=-0.1", "reg.flooding.b"),
    ("childtuning_f", "p=0", "reg.childtuning_f.p"),
    ("childtuning_f", "p=1.5", "reg.childtuning_f.p"),
    ("childtuning_d", "p=-0.2", "reg.childtuning_d.p"),
    ("childtuning_d", "fisher_batches=0", "reg.childtuning_d.fisher_batches"),
    ("childtuning_d", "scope=head", "reg.childtuning_d.scope"),
    ("childtuning_d", "fisher_mode=test", "reg.childtuning_d.fisher_mode"),
    ("label_smoothing", "eps=1", "reg.label_smoothing.eps"),
    ("noise", "sigma=-1", "reg.noise.sigma"),
    ("spectral", "lam=-1", "reg.spectral.lam"),
    ("rdrop", "alpha=abc", "reg.rdrop.alpha"),
]


@pytest.mark.parametrize("name,setting,key", BAD, ids=[f"{b[0]}.{b[1]}" for b in BAD])
def test_bad_parameter_is_one_config_error_naming_the_key(name, setting, key, tmp_path):
    from runner.config import compose
    from runner.errors import ConfigError
    from runner.main import run

    cfg = compose(FAST + [f"reg=[{name}]", f"reg.{name}.{setting}"])
    with pytest.raises(ConfigError) as e:
        run(cfg, tmp_path / "run")
    msg = str(e.value)
    assert msg.startswith(key + ":") and "\n" not in msg, msg
    assert not (tmp_path / "run").exists()  # rejected before anything was written


def test_unknown_trick_key_names_the_allowed_ones(tmp_path):
    from runner.config import compose
    from runner.errors import ConfigError
    from runner.main import run

    with pytest.raises(ConfigError, match=r"^reg\.rdrop\.beta: unknown key \(allowed: alpha"):
        run(compose(FAST + ["reg=[rdrop]", "+reg.rdrop.beta=1"]), tmp_path / "run")


def test_cli_unknown_trick_name(tmp_path):
    r = cli(["train", "reg=[rdrop,nope]"], cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: reg: unknown option 'nope'") and "rdrop" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_cli_negative_alpha(tmp_path):
    r = cli(["train", "reg=[rdrop]", "reg.rdrop.alpha=-1", *FAST], cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "error: reg.rdrop.alpha: must be >= 0, got -1"
    assert not list(tmp_path.glob("runs/*/*/metrics.jsonl"))


@pytest.mark.parametrize("name", REG)
def test_reg_config_is_nested_under_its_name_and_documented(name):
    path = CONF / "reg" / f"{name}.yaml"
    text = path.read_text()
    assert text.startswith("# ") and len(text.splitlines()[0]) > 10  # `tricks list` help
    data = yaml.safe_load(text)
    assert list(data) == [name]  # multi-select group: keys nest under the file's name
    node = data[name]
    module, cls = node["_target_"].rsplit(".", 1)
    assert module == f"runner.tricks.{name}"  # one file per trick, named as on the CLI
    trick = getattr(importlib.import_module(module), cls)(
        **{k: v for k, v in node.items() if k != "_target_"}
    )
    doc = importlib.import_module(module).__doc__
    assert "Defaults" in doc and ("kexue.fm" in doc or "Su Jianlin" in doc)
    assert isinstance(trick.order, int)
    assert OmegaConf.create(text)  # valid for OmegaConf too


@pytest.mark.parametrize("name", ["gradpen", "paramgradpen"])
def test_double_backward_penalties_refuse_torch_compile(name, tmp_path):
    from runner.config import compose
    from runner.errors import ConfigError
    from runner.main import run

    cfg = compose(FAST + [f"reg=[{name}]", "trainer.compile=true"])
    with pytest.raises(ConfigError, match=rf"^reg\.{name}: needs a double backward"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
