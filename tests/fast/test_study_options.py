"""The study's option resolution (`resolve_study` of `CompareOptions`): the default study's schemes, lengths, steps
and evaluation tokens, the --quick study's, and --positions selecting schemes in the order given, once each. Nothing
is trained."""

from hf_posattn.model.configuration_posattn import POSITION_EMBEDDING_TYPES
from hf_posattn.study.options import DEFAULT_POSITIONS, QUICK_POSITIONS, CompareOptions, resolve_study


def test_the_default_study_trains_every_built_in_scheme_and_quick_the_five_published_ones():
    default, quick = resolve_study(CompareOptions()), resolve_study(CompareOptions(quick=True))
    assert default.positions == list(DEFAULT_POSITIONS) and len(DEFAULT_POSITIONS) == 9
    assert set(DEFAULT_POSITIONS) <= set(POSITION_EMBEDDING_TYPES)
    assert quick.positions == list(QUICK_POSITIONS) == ["sinusoidal", "learned", "rotary", "alibi", "none"]
    assert (default.seq_len, default.max_steps, default.eval_tokens) == (128, 300, 65536)
    assert (quick.seq_len, quick.max_steps, quick.eval_tokens) == (64, 150, 16384)
    # --positions selects any, in the order given, once each.
    assert resolve_study(CompareOptions(quick=True, positions=["fire", "t5", "fire"])).positions == ["fire", "t5"]
