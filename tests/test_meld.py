import pandas as pd
import pytest

from llm_annotator.core.errors import DataError
from llm_annotator.corpora.meld import MELT_SPEAKERS, load_meld, melt_subset, subset_match


def test_the_melt_filter_reproduces_the_released_subset(shared_data):
    train = load_meld(shared_data / "meld", "train")
    assert len(train) == 9989
    assert train.loc[0, "clip"] == "dia0_utt0"
    melt = pd.read_csv(shared_data / "melt" / "meld_train.csv")
    match = subset_match(melt_subset(train), melt)
    assert match["reference"] == 7024
    assert match["precision"] >= 0.99 and match["recall"] >= 0.99
    assert round(match["precision"], 4) == 0.9943 and match["recall"] == 1.0
    assert len(MELT_SPEAKERS) == 42


def test_filter_parameters_do_what_they_say(shared_data):
    dev = load_meld(shared_data / "meld", "dev")
    assert len(dev) == 1109 and dev["duration_s"].notna().all()
    everyone = melt_subset(dev, speakers=None, min_duration_s=0, min_words=0)
    assert len(everyone) == 1109
    strict = melt_subset(dev, min_duration_s=2.0, min_words=5)
    assert (strict["duration_s"] >= 2.0).all() and (strict["n_words"] >= 5).all()
    assert set(strict["Speaker"].str.lower()) <= MELT_SPEAKERS


def test_loader_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_meld(tmp_path, "dev")
    with pytest.raises(DataError, match="unknown MELD split 'valid'"):
        load_meld(tmp_path, "valid")
    (tmp_path / "dev_sent_emo.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a MELD split"):
        load_meld(tmp_path, "dev")
