"""Model and checkpoint archives whose zip members are not what they claim.

Every case must end as fastnn's own ModelFileError in the library and as a
one-line error with exit code 1 from the CLI (no traceback, nothing saved
is touched).
"""

import io
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import checkpoint
from fastnn.cli import main
from fastnn.errors import ModelFileError


def _npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _members(path):
    with zipfile.ZipFile(path) as z:
        return [(info.filename, z.read(info)) for info in z.infolist()]


@pytest.fixture(autouse=True)
def _quiet_duplicate_warnings(recwarn):
    """zipfile warns when a test writes a duplicated member on purpose."""


def _write(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            z.writestr(name, data)


def _huge_header_npy():
    """A valid .npy header declaring 10**12 float32 values, followed by 8 bytes."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = (10**12,)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + b"\0" * 8


def _replace(members, name, data):
    return [(n, data if n == name else d) for n, d in members]


PICKLE = _npy(np.array([{"x": 1}, None], dtype=object))  # an object array: pickled
RAW_PICKLE = pickle.dumps({"evil": True})

# name -> (how the members change, a fragment of the message)
CASES = {
    "header raw bytes": (lambda m: _replace(m, "header.npy", b"just some bytes"),
                         "'header' is not a readable .npy array"),
    "header a bare pickle": (lambda m: _replace(m, "header.npy", RAW_PICKLE),
                             "'header' is not a readable .npy array"),
    "param object array": (lambda m: _replace(m, "param_0.npy", PICKLE), "Python objects"),
    "param empty": (lambda m: _replace(m, "param_1.npy", b""), "'param_1' is not a readable .npy array"),
    "duplicated member": (lambda m: [*m, m[1]], "appears more than once"),
    "path in member name": (lambda m: [*m, ("../evil.npy", m[1][1])], "unexpected member"),
    "folder in member name": (lambda m: [*m, ("a/param_9.npy", m[1][1])], "unexpected member"),
    "not an npy name": (lambda m: [*m, ("notes.txt", b"hello")], "unexpected member"),
    "huge declared size": (lambda m: _replace(m, "param_0.npy", _huge_header_npy()),
                           "has shape (1000000000000,)"),
}


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.npz"
    fastnn.save_model(fastnn.Network([64, 5, 10], seed=0), path)
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_model_members_raise_model_file_error(model, case, capsys):
    mutate, fragment = CASES[case]
    bad = model.with_name("bad.npz")
    _write(bad, mutate(_members(model)))
    with pytest.raises(ModelFileError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        fastnn.load_model(bad)
    rc = main(["evaluate", str(bad), "-d", "digits"])
    _, err = capsys.readouterr()
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(bad) in err


def test_huge_layer_sizes_are_refused_before_allocating(model):
    members = _members(model)
    header = np.load(model)["header"].tobytes().decode()
    huge = header.replace("[64, 5, 10]", "[100000, 100000, 10]")
    bad = model.with_name("huge.npz")
    _write(bad, _replace(members, "header.npy", _npy(np.frombuffer(huge.encode(), np.uint8))))
    with pytest.raises(ModelFileError, match="more than the file holds"):
        fastnn.load_model(bad)


TRAIN = ["train", "-d", "digits", "-e", "2", "-nhl", "1", "-sz", "8", "--no-progress"]


@pytest.mark.parametrize("case", ["header raw bytes", "duplicated member", "huge declared size",
                                  "path in member name", "params object array"])
def test_malformed_checkpoints_exit_1_with_one_line(tmp_path, case, capsys):
    ckpt = tmp_path / "ckpt"
    assert main([*TRAIN, "--checkpoint", str(ckpt), "-e", "1"]) == 0
    path = checkpoint.checkpoint_path(ckpt)
    members = _members(path)
    if case == "params object array":
        members = _replace(members, "params.npy", PICKLE)
    elif case == "huge declared size":
        members = _replace(members, "params.npy", _huge_header_npy())
    else:
        members = CASES[case][0](members)
    _write(path, members)
    before = path.read_bytes()
    capsys.readouterr()
    rc = main([*TRAIN, "--checkpoint", str(ckpt), "--resume"])
    _, err = capsys.readouterr()
    assert rc == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(path) in err
    assert path.read_bytes() == before  # the checkpoint is left for the user to inspect


NAMES = st.sampled_from(["header.npy", "param_0.npy", "param_1.npy", "param_2.npy",
                         "param_3.npy", "param_0.npy", "x/param_1.npy", "param_4", ".npy"])


def _contents(valid):
    return st.one_of(
        st.sampled_from([*valid, PICKLE, RAW_PICKLE, b"", _huge_header_npy()]),
        st.binary(max_size=64),
        st.sampled_from(valid).flatmap(
            lambda v: st.integers(0, len(v)).map(lambda cut: v[:cut])),
    )


@pytest.mark.filterwarnings("ignore:Duplicate name")  # duplicates are one of the cases
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_zip_level_fuzz_raises_only_model_file_errors(tmp_path, data):
    path = tmp_path / "m.npz"
    if not path.exists():
        fastnn.save_model(fastnn.Network([6, 5, 3], seed=0), path)
    valid = [d for _, d in _members(path)]
    members = data.draw(st.lists(st.tuples(NAMES, _contents(valid)), min_size=0, max_size=7))
    bad = tmp_path / "bad.npz"
    _write(bad, members)
    try:
        net, _ = fastnn.load_model(bad)
    except ModelFileError:
        return
    assert np.isfinite(net.params.flat).all()


def _patch_central_entry(path, member, offset, value):
    """Set a 2-byte field of ``member``'s central-directory entry (zip spec offsets)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        name_len = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + name_len] == member.encode():
            data[at + offset:at + offset + 2] = value.to_bytes(2, "little")
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(member)


@pytest.mark.parametrize("offset, value, fragment", [
    (8, 1, "encrypted"),        # general-purpose flag bit 0: an "encrypted" member
    (10, 99, "compression"),    # a compression method zipfile does not know
])
def test_encrypted_or_unknown_compression_members_are_model_file_errors(model, offset, value,
                                                                        fragment):
    # found by the byte-flipping property test in test_reliability.py
    _patch_central_entry(model, "param_1.npy", offset, value)
    with pytest.raises(ModelFileError, match=fragment):
        fastnn.load_model(model)
