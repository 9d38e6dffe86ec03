"""The C++ recurrences: the Python fast path's numbers, a quiet fallback where they cannot build."""

import subprocess
import sys

import pytest
import torch

from looplm.nn import native
from looplm.nn.fast import lstm_recurrence


def lstm_run(path, recurrence_path, dtype, T, bs, n_hid, autocast=False, batch_major=False):
    """Output, c_n and every input's gradient of one seeded LSTM recurrence; ``batch_major``:
    xp is a (T, bs) view of a (bs, T, 4*n_hid) tensor, as a batch_first layer makes it."""
    recurrence_path(path)
    g = torch.Generator().manual_seed(n_hid)
    xp_shape = (bs, T, 4 * n_hid) if batch_major else (T, bs, 4 * n_hid)
    shapes = [xp_shape, (bs, n_hid), (bs, n_hid), (4 * n_hid, n_hid)]
    scales = [1, 1, 1, n_hid ** -0.5]            # W_hh as initialised: a stable recurrence
    inputs = [(torch.randn(s, generator=g, dtype=torch.float64) * k).to(dtype).requires_grad_()
              for s, k in zip(shapes, scales)]
    xp = inputs[0].transpose(0, 1) if batch_major else inputs[0]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, c_n = lstm_recurrence(xp, *inputs[1:])
    probe = torch.randn(out.shape, generator=g, dtype=torch.float64).to(dtype)
    (out.to(dtype) * probe).sum().add(c_n.to(dtype).sum()).backward()
    return [out.to(dtype), c_n.to(dtype)] + [x.grad for x in inputs]


@pytest.mark.parametrize("batch_major", [False, True], ids=["time-major", "batch-major"])
@pytest.mark.parametrize("n_hid", [8, 37, 64])    # below, across and at whole vector registers
def test_cxx_lstm_equals_python_lstm_in_float64(n_hid, batch_major, recurrence_path):
    cxx = lstm_run("cxx", recurrence_path, torch.float64, 7, 5, n_hid, batch_major=batch_major)
    python = lstm_run("python", recurrence_path, torch.float64, 7, 5, n_hid, batch_major=batch_major)
    for a, b in zip(cxx, python):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("batch_major", [False, True], ids=["time-major", "batch-major"])
@pytest.mark.parametrize("brgemm", [True, False], ids=["brgemm", "addmm"])
def test_cxx_lstm_equals_python_lstm_in_float32(brgemm, batch_major, recurrence_path):
    """float32 steps multiply through oneDNN's brgemm on AVX512 CPUs, ATen's addmm elsewhere:
    both are checked here."""
    recurrence_path("cxx")
    native.extension().set_f32_brgemm(brgemm)
    try:
        cxx = lstm_run("cxx", recurrence_path, torch.float32, 9, 6, 40, batch_major=batch_major)
    finally:
        native.extension().set_f32_brgemm(True)
    python = lstm_run("python", recurrence_path, torch.float32, 9, 6, 40, batch_major=batch_major)
    for a, b in zip(cxx, python):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("batch_major", [False, True], ids=["time-major", "batch-major"])
@pytest.mark.parametrize("n_hid", [13, 64])    # the generic bf16 matmul, and the AMX one where there
def test_cxx_lstm_in_bf16_autocast_is_as_close_to_float64_as_python(n_hid, batch_major, recurrence_path):
    """bf16 rounds differently in the two paths (C++ keeps the gates and c in float32), so
    each is compared with the float64 result: the C++ error is at most the Python path's."""
    exact = lstm_run("cxx", recurrence_path, torch.float64, 12, 6, n_hid, batch_major=batch_major)
    errors = {}
    for path in ("cxx", "python"):
        values = lstm_run(path, recurrence_path, torch.float32, 12, 6, n_hid, True, batch_major)
        errors[path] = [((a.double() - b).abs().max() / b.abs().max()).item() for a, b in zip(values, exact)]
    for cxx, python in zip(errors["cxx"], errors["python"]):
        assert cxx < 0.05 and cxx <= 1.5 * python + 1e-3, errors


def _fresh(monkeypatch):
    native.extension.cache_clear()
    monkeypatch.setattr(native, "extension", native.extension.__wrapped__)


def test_no_compiler_means_the_python_path_and_one_line_saying_what_is_missing(monkeypatch, capsys):
    _fresh(monkeypatch)
    monkeypatch.delenv(native.DISABLE, raising=False)
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    assert native.extension() is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compiler" in err and "apt install g++" in err and native.DISABLE in err
    x = torch.randn(3, 2, 8, dtype=torch.float64)
    out, _ = lstm_recurrence(x, torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64),
                             torch.randn(8, 2, dtype=torch.float64))
    assert out.shape == (3, 2, 2)


def test_a_failed_build_is_one_line_too(monkeypatch, capsys):
    _fresh(monkeypatch)
    monkeypatch.delenv(native.DISABLE, raising=False)

    def broken():
        raise RuntimeError("Error building extension 'x':\n[1/2] c++ ...\nninja: build stopped: subcommand failed.")

    monkeypatch.setattr(native, "_build", broken)
    assert native.extension() is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "build failed" in err and "subcommand failed" in err


def test_the_environment_variable_chooses_the_python_path_quietly(monkeypatch, capsys):
    _fresh(monkeypatch)
    monkeypatch.setenv(native.DISABLE, "1")
    monkeypatch.setattr(native, "_build", lambda: pytest.fail("built although disabled"))
    assert native.extension() is None
    assert capsys.readouterr().err == ""


def test_importing_looplm_compiles_nothing():
    """The build happens on the first fast-path call, never at import."""
    code = ("import looplm, looplm.nn, looplm.models, sys; from looplm.nn import native; "
            "sys.exit(int(native.extension.cache_info().currsize))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def run_threads(threads, *args, **kw):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return lstm_run(*args, **kw)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype, n_hid, autocast", [(torch.float64, 128, False), (torch.float32, 128, False),
                                                    (torch.float32, 64, False), (torch.float32, 64, True)],
                         ids=["f64-gate-math-split", "f32-addmm", "f32-brgemm-batch-split", "bf16-batch-split"])
def test_cxx_lstm_gives_the_same_numbers_on_two_threads(dtype, n_hid, autocast, recurrence_path):
    """Two threads split the batch for the whole sequence (brgemm paths), or a large step's
    gate math (the others): each row's arithmetic stays what it is on one thread (but for
    float32 at hidden 128, where one thread multiplies with brgemm and two with addmm)."""
    args = ("cxx", recurrence_path, dtype, 3, 64, n_hid, autocast, True)
    two, one = run_threads(2, *args), run_threads(1, *args)
    python = lstm_run("python", recurrence_path, dtype, 3, 64, n_hid, autocast, True)
    for a, b, c in zip(two, one, python):
        if dtype == torch.float64:
            torch.testing.assert_close(a, c, atol=1e-12, rtol=0)
        elif not autocast:
            torch.testing.assert_close(a, c, atol=2e-5, rtol=1e-5)
        close = 2e-5 if (dtype, n_hid, autocast) == (torch.float32, 128, False) else 1e-6
        torch.testing.assert_close(a, b, atol=close, rtol=close)
