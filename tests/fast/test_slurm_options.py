"""The Slurm executor's options and the checks that need no cluster: free-form sbatch options from key=value, a study
folder on a node's own disk refused, and submitit asked for by name where it is not installed (the Slurm cases on a
real cluster are in tests/e2e/test_slurm.py)."""

import os
import sys
from pathlib import Path

import pytest

from hf_posattn.study.slurm import (
    SlurmOptions,
    SlurmUnavailable,
    check_shared_folder,
    check_slurm,
    make_executor,
    parse_extra,
)


def test_extra_options_read_as_sbatch_long_names():
    assert parse_extra(["account=abc", "--qos=high", "exclusive", "constraint=a100|h100", "comment=a=b"]) == {
        "account": "abc", "qos": "high", "exclusive": True, "constraint": "a100|h100", "comment": "a=b"}
    with pytest.raises(ValueError, match="key=value"):
        parse_extra(["=abc"])


@pytest.mark.parametrize("folder, local", [("/tmp", "/tmp"), ("/tmp/study", "/tmp"), ("/dev/shm/study", "/dev/shm"),
                                           ("/var/tmp/a/b", "/var/tmp")])
def test_a_folder_on_a_nodes_own_disk_is_refused_with_the_reason(folder, local):
    with pytest.raises(ValueError, match=f"under {local}, .*each node's own disk.*file system the nodes share"):
        check_shared_folder(folder)
    check_shared_folder("/work/study")  # elsewhere, fine


def test_the_temporary_folder_of_this_process_is_refused_too(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    with pytest.raises(ValueError, match="each node's own disk"):
        check_shared_folder(tmp_path / "scratch" / "study")


def test_without_submitit_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as where it is not installed: `import submitit` fails
    for call in (lambda: make_executor("/work/study", SlurmOptions()),
                 lambda: check_slurm("/work/study", SlurmOptions())):
        with pytest.raises(SlurmUnavailable, match=r'pip install "hf-posattn\[slurm\]"'):
            call()


def test_a_link_planted_where_the_jobs_files_go_is_refused(tmp_path):
    from hf_posattn.files import LinkRefused
    from hf_posattn.study.run import CompareOptions, make_executor

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "slurm").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LinkRefused, match=r"study/slurm is a symbolic link"):
        make_executor(CompareOptions(output_dir=str(tmp_path / "study"), slurm=SlurmOptions()))


@pytest.mark.parametrize("broken", ["no commands", "no answer"])
def test_a_machine_where_slurm_cannot_be_reached_is_told_what_to_do(broken, tmp_path, monkeypatch, capsys):
    """Not a traceback: the command says that Slurm cannot be reached from here, and from where it can."""
    from conftest import posattn

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if broken == "no answer":  # Slurm's commands are installed, but no cluster is configured here
        for name in ("sinfo", "sbatch", "sacct", "srun"):
            (bin_dir / name).write_text("#!/bin/sh\n"
                                        "echo 'sinfo: fatal: Could not establish a configuration source' >&2\n"
                                        "exit 1\n")
            (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir) if broken == "no commands" else f"{bin_dir}:{os.environ['PATH']}")
    pytest.importorskip("submitit")
    study = Path(__file__).resolve().parent.parent / ".slurm-work" / f"unreachable-{broken.replace(' ', '-')}"
    assert posattn("compare", "--quick", "--task", "passkey", "--slurm", "--output-dir", study) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "a login node" in err, err
    assert not study.exists()
