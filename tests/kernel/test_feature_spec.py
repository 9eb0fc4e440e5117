import pytest

from comfyui_sae_steering.nodes.steer.feature_spec import edits_for, parse_features
from comfyui_sae_steering.sae import Edit


def test_single_index_takes_node_strength():
    assert parse_features("22420", 2.5) == [(22420, 2.5)]


def test_list_with_own_strengths():
    assert parse_features("22420:2.0, 17:-1.5; 3 \n 9 : 1e-1", 4.0) == [(22420, 2.0), (17, -1.5), (3, 4.0), (9, 0.1)]


@pytest.mark.parametrize("text", ["", "  ", "abc", "12:x", "-3", "1.5", "7:inf", "7:nan", "7:2:3"])
def test_bad_strings_are_refused_with_the_input_name(text):
    with pytest.raises(ValueError, match="features"):
        parse_features(text, 1.0)


def test_out_of_range_names_the_size():
    with pytest.raises(ValueError, match="49152"):
        parse_features("49152", 1.0, d_sae=49152)


def test_modes_map_to_edits():
    feats = [(5, 2.0), (6, 0.0)]
    assert edits_for(feats, "add where active") == [Edit(5, "add", 2.0, True), Edit(6, "add", 0.0, True)]
    assert edits_for(feats, "scale")[0] == Edit(5, "scale", 2.0, False)
    assert edits_for(feats, "set where active")[1].only_active
    with pytest.raises(ValueError, match="mode"):
        edits_for(feats, "multiply")


def test_move_entries_replace_one_feature_by_another_where_it_is_found():
    from comfyui_sae_steering.nodes.steer.feature_spec import Move
    parsed = parse_features("5>9:2.5, 7, 3>4", 1.5, d_sae=16)
    assert parsed == [Move(9, 2.5, 5), (7, 1.5), Move(4, 1.5, 3)]
    # whatever the mode, a move removes the source and adds the target where the source is active
    assert edits_for(parsed, "add") == [Edit(5, "set", 0.0, where=5), Edit(9, "add", 2.5, where=5),
                                        Edit(7, "add", 1.5, False), Edit(3, "set", 0.0, where=3),
                                        Edit(4, "add", 1.5, where=3)]
    with pytest.raises(ValueError, match="index 16 is out of range"):
        parse_features("16>2", 1.0, d_sae=16)
    with pytest.raises(ValueError, match="from>to:strength"):
        parse_features("5>>9", 1.0)
