"""`posattn convert` on a full disk: the disk fills while the converted model's weights are written; the command
says what it could not write (exit status 1) and leaves no output folder behind."""


def test_a_full_disk_while_a_converted_model_is_saved_is_said_and_leaves_nothing(tmp_path, capsys):
    from conftest import disk_full_past
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_posattn.cli import main

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32)).save_pretrained(
        tmp_path / "gpt2")
    with disk_full_past(4000):  # config.json fits; the weights do not
        code = main(["convert", str(tmp_path / "gpt2"), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot write the model in {tmp_path / 'out'}: File too large" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2"]
