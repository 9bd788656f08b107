"""The one writer (`hf_posattn.files`): no write goes through a symbolic link, whichever writer, whatever the link
points to; a figure's default path in a model folder keeps its link for the writer to refuse."""

import os
import shutil

import pytest

from hf_posattn import files
from hf_posattn.figures.common import pyplot, save

from conftest import posattn, snapshot


def draw(path):
    figure = pyplot().figure(figsize=(1, 1))
    return save(figure, path)


def save_whole(path):
    folder, name = os.path.split(path)
    with files.saved_whole(folder) as temporary:
        with open(os.path.join(temporary, name), "w") as file:
            file.write("saved")


WRITERS = {
    "write_text": lambda path: files.write_text(path, "text"),
    "write_bytes": lambda path: files.write_bytes(path, b"bytes"),
    "write_json": lambda path: files.write_json(path, {"a": 1}),
    "write_with": lambda path: files.write_with(path, lambda temporary: open(temporary, "w").close()),
    "figure": draw,
    "saved_whole": save_whole,
}


def plant(link, kind, outside):
    """A symbolic link at `link` to a file outside the folder, to a folder, or to nothing (dangling)."""
    targets = {"file": outside / "victim.txt", "folder": outside, "dangling": outside / "absent.txt"}
    link.symlink_to(targets[kind])


@pytest.mark.parametrize("kind", ["file", "folder", "dangling"])
@pytest.mark.parametrize("writer", WRITERS)
def test_no_writer_writes_through_a_link(writer, kind, tmp_path):
    folder, outside = tmp_path / "model", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "victim.txt").write_text("precious")
    link = folder / "written.png"
    plant(link, kind, outside)
    before = snapshot(outside)
    with pytest.raises(files.LinkRefused, match=f"{link} is a symbolic link .*never through a link"):
        WRITERS[writer](str(link))
    assert snapshot(outside) == before and (outside / "victim.txt").read_text() == "precious"
    assert link.is_symlink() and sorted(os.listdir(folder)) == ["written.png"]  # no temporary file left


@pytest.mark.parametrize("writer", WRITERS)
def test_every_writer_writes_a_plain_file_where_no_link_is(writer, tmp_path):
    path = tmp_path / "written.png"
    WRITERS[writer](str(path))
    assert path.is_file() and not path.is_symlink()


def test_a_lock_is_not_taken_through_a_link(tmp_path):
    target, victim = tmp_path / "run", tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, files.lock_path(str(target)))
    with pytest.raises(files.LinkRefused), files.lock(str(target)):
        pass
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("given", ["figure.png", "sub/figure.png", "linked/figure.png"])
def test_an_output_keeps_its_own_name_and_resolves_its_folder(given, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "sub")
    (tmp_path / "figure.png").symlink_to(tmp_path / "elsewhere.png")
    folder = "sub" if given.startswith(("sub", "linked")) else ""
    assert files.resolve_output(given, "--output") == os.path.join(tmp_path, folder, "figure.png")


def test_an_empty_output_is_refused_naming_its_option():
    with pytest.raises(ValueError, match="--output is empty"):
        files.resolve_output("", "--output")


@pytest.mark.parametrize("kind", ["file", "dangling"])
def test_plot_positions_refuses_a_link_planted_in_the_model_folder(kind, saved, tmp_path, capsys):
    """The figure's default path, DIR/positions.png, is the tool's choice: a link there is refused before any
    drawing, and what it points to is untouched."""
    folder, outside = tmp_path / "model", tmp_path / "outside"
    shutil.copytree(saved[0], folder)
    outside.mkdir()
    (outside / "victim.txt").write_text("precious")
    plant(folder / "positions.png", kind, outside)
    before = snapshot(outside)
    assert posattn("plot-positions", folder) == 2
    assert "positions.png is a symbolic link" in capsys.readouterr().err
    assert snapshot(outside) == before


def test_no_writer_opens_a_file_without_refusing_links():
    """Every write in the package goes through `files`: no other module opens a file for writing itself."""
    import hf_posattn

    root = os.path.dirname(hf_posattn.__file__)
    writing = []
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py") and name != "files.py" and "/model" not in folder:
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                writing += [name for mode in ('"w")', '"wb")', "'w')", "'wb')", '"a")') if mode in text]
    assert writing == ["context.py"]  # the lesson's toy corpus, in a temporary folder of its own


@pytest.mark.parametrize("where", ["checkpoint-4", "runs", "checkpoint-2/optimizer.pt"])
@pytest.mark.parametrize("kind", ["file", "folder", "dangling"])
def test_a_run_continued_with_a_link_in_its_folder_is_refused(where, kind, tmp_path):
    """Training writes again into a run it continues, under names it chose (checkpoints, the trackers' logs): a
    link anywhere in that folder is refused before any work, wherever it points."""
    from hf_posattn.runfolder import RUN_FILE, plan_run

    run, outside = tmp_path / "run", tmp_path / "outside"
    (run / "checkpoint-2").mkdir(parents=True)
    (run / RUN_FILE).write_text("{}")
    outside.mkdir()
    (outside / "victim.txt").write_text("precious")
    plant(run / where, kind, outside)
    with pytest.raises(files.LinkRefused, match=f"{run / where} is a symbolic link"):
        plan_run(str(run), resume=True)
    (run / where).unlink()
    assert plan_run(str(run), resume=True).work_dir == str(run)
