"""A damaged checkpoint or cache entry never blocks a rerun; saves leave no half files (issue 14).

Oracles: a run resumed from a damaged file equals a run from scratch; the damaged file is kept,
byte for byte, under ``.corrupt``; a process killed in the middle of a save leaves the previous
checkpoint intact, and the next save removes its temporary file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import assert_states_equal

from sam_course import train
from sam_course.train.checkpoint import atomic_save, remove_stale_temporaries

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ["seconds", "eval_seconds"]

# The run, as source text: the subprocess test executes the very same lines.
SETUP = textwrap.dedent("""
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    from sam_course import train

    def make_run():
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(40, 4, generator=generator)
        data = TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), data

    def fit(epochs, checkpoint=None, resume=False):
        model, optimizer, data = make_run()
        result = train.fit(model, optimizer, data, epochs, batch_size=8, checkpoint=checkpoint, resume=resume,
                           progress=False)
        return model, result
""")
namespace: dict = {}
exec(SETUP, namespace)  # noqa: S102 - the test's own source text
fit = namespace["fit"]


def history(result) -> pd.DataFrame:
    return result.history.drop(columns=TIMINGS)


@pytest.fixture(scope="module")
def scratch():
    """The oracle: two epochs without any checkpoint."""
    return fit(2)


def damage(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "zeroed":
        path.write_bytes(bytes(len(raw)))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "lacks history":
        saved = torch.load(path, weights_only=True)
        del saved["history"]
        torch.save(saved, path)
    elif how == "not a dict":
        torch.save([1, 2, 3], path)


HOW = ["truncated", "zeroed", "empty", "lacks history", "not a dict"]


@pytest.mark.parametrize("how", HOW)
def test_a_damaged_checkpoint_is_moved_aside_and_the_run_starts_over(tmp_path, scratch, how):
    path = tmp_path / "run.checkpoint"
    fit(1, checkpoint=path)
    damage(path, how)
    damaged = path.read_bytes()
    with pytest.warns(RuntimeWarning, match=rf"checkpoint {path} is unusable \(.*\); moved it to {path}.corrupt"):
        model, result = fit(2, checkpoint=path, resume=True)
    pd.testing.assert_frame_equal(history(result), history(scratch[1]))
    assert_states_equal(model.state_dict(), scratch[0].state_dict())
    assert (tmp_path / "run.checkpoint.corrupt").read_bytes() == damaged
    assert torch.load(path, weights_only=True)["epoch"] == 2  # a good checkpoint again


def test_a_checkpoint_of_another_seed_is_still_refused_not_moved(tmp_path):
    path = tmp_path / "run.checkpoint"
    fit(1, checkpoint=path)
    model, optimizer, data = namespace["make_run"]()
    with pytest.raises(ValueError, match="was written with seed 0"):
        train.fit(model, optimizer, data, 2, batch_size=8, checkpoint=path, resume=True, seed=1, progress=False)
    assert path.exists() and not (tmp_path / "run.checkpoint.corrupt").exists()


def tiny_config():
    return train.RunConfig(dataset="mnist", n_train=100, n_test=50, model="mlp", model_kwargs={"hidden": (16,)},
                           optimizer="adam", lr=1e-3, epochs=1, batch_size=50, seed=0)


@pytest.mark.parametrize("how", HOW)
def test_a_damaged_cache_entry_is_moved_aside_and_the_run_retrains(fast_loader, how):
    first = train.run(tiny_config(), progress=False, verbose=False)
    damage(first.path, how)
    damaged = first.path.read_bytes()
    with pytest.warns(RuntimeWarning, match=rf"cached run {first.path} is unusable .*moved it to {first.path}.corrupt"):
        second = train.run(tiny_config(), progress=False, verbose=False)
    assert not second.from_cache
    pd.testing.assert_frame_equal(second.history.drop(columns=TIMINGS), first.history.drop(columns=TIMINGS))
    assert_states_equal(second.state_dict, first.state_dict)
    assert first.path.with_name(first.path.name + ".corrupt").read_bytes() == damaged
    assert train.run(tiny_config(), progress=False, verbose=False).from_cache


def dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_the_next_save_removes_temporaries_of_dead_writers_only(tmp_path):
    path = tmp_path / "file.pt"
    dead = tmp_path / f".file.pt.{dead_pid()}.abc123.tmp"
    legacy = tmp_path / ".file.pt.k2j3h4.tmp"  # the mkstemp name before the pid was recorded
    live = tmp_path / f".file.pt.{os.getppid()}.def456.tmp"  # the parent process runs
    other = tmp_path / ".other.pt.k2j3h4.tmp"
    for p in (dead, legacy, live, other):
        p.write_bytes(b"partial")
    atomic_save({"x": torch.ones(2)}, path)
    assert not dead.exists() and not legacy.exists() and live.exists() and other.exists()
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(2))
    assert remove_stale_temporaries(path) == []


def test_a_process_killed_while_saving_leaves_the_old_checkpoint_and_a_rerun_cleans_up(tmp_path, scratch):
    path = tmp_path / "run.checkpoint"
    fit(1, checkpoint=path)
    before = path.read_bytes()
    child = SETUP + textwrap.dedent(f"""
        import os
        def dying_save(obj, f, *args, **kwargs):
            f.write(b"half a checkpoint")
            f.flush()
            os._exit(17)  # killed mid-save: no exception handler, no cleanup runs
        torch.save = dying_save
        fit(2, checkpoint={str(path)!r}, resume=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, timeout=300)
    assert done.returncode == 17, done.stderr.decode()
    temporaries = list(tmp_path.glob(".run.checkpoint.*.tmp"))
    assert len(temporaries) == 1 and temporaries[0].read_bytes() == b"half a checkpoint"
    assert path.read_bytes() == before  # the reader still sees the whole epoch-1 checkpoint
    model, result = fit(2, checkpoint=path, resume=True)
    pd.testing.assert_frame_equal(history(result), history(scratch[1]))
    assert_states_equal(model.state_dict(), scratch[0].state_dict())
    assert list(tmp_path.glob(".run.checkpoint.*.tmp")) == []
