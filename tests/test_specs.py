"""Settings defined once: messages, parsing and widget ranges come from each field's spec."""

import json

import pytest

from devmode.chat.limits import ChatLimits, ChatSettings
from devmode.data.splits import InvalidSplit, SplitSpec
from devmode.models.config import InvalidConfig, TrainConfig
from devmode.monitor.alerts import InvalidAlertRule, RuleSettings


@pytest.mark.parametrize(
    "cls,values,message",
    [
        (
            TrainConfig,
            {"epochs": 0},
            "epochs must be from 1 to 1000 (a whole number), e.g. 5; found 0.",
        ),
        (
            TrainConfig,
            {"learning_rate": 1.5},
            "learning_rate must be above 0 and below 1, e.g. 0.0001",
        ),
        (TrainConfig, {"dropout": 1.0}, "dropout must be from 0 to below 1, e.g. 0.1; found 1.0."),
        (
            TrainConfig,
            {"eval_batch_size": 0},
            "eval_batch_size must be at least 1 (a whole number)",
        ),
        (TrainConfig, {"optimizer": "adam"}, "optimizer must be one of adamw, sgd; found 'adam'."),
        (TrainConfig, {"learning_rate": "fast"}, "learning_rate must be a number; found 'fast'."),
        (TrainConfig, {"lora": "yes"}, "lora must be true or false; found 'yes'."),
        (ChatSettings, {"budget_tokens": 8}, "budget_tokens must be from 16 to 131072 tokens"),
        (ChatLimits, {"top_p": 0}, "top_p must be above 0 and at most 1, e.g. 0.95; found 0."),
        (RuleSettings, {"min_volume": 0}, "min_volume must be at least 1 (a whole number), e.g. 5"),
        (SplitSpec, {"train": 0.5}, "Split fractions must be between 0 and 1, add up to 1"),
    ],
)
def test_a_bad_value_is_refused_with_what_was_expected_and_found(cls, values, message):
    with pytest.raises(cls.error) as refused:
        cls(**values)
    assert message in str(refused.value)
    assert issubclass(cls.error, (InvalidConfig, InvalidAlertRule, InvalidSplit, Exception))


def test_a_stored_config_is_trusted_and_an_earlier_versions_dataset_key_ignored():
    stored = {"dataset": "phrasebank", "epochs": 3, "a_field_from_the_future": 1}
    # settings added since then take the value those runs had: the stable recipe was off
    old = TrainConfig(
        epochs=3, layer_lr_decay=1.0, average_last_epochs=0, early_stopping_patience=2
    )
    assert TrainConfig.from_stored(stored) == old
    assert TrainConfig.from_dict(stored) == TrainConfig(epochs=3)
    # validated once, when a run is created or imported; what devmode stored is not checked again
    assert TrainConfig.from_stored({"epochs": -5}).epochs == -5
    with pytest.raises(InvalidConfig, match="epochs must be"):
        TrainConfig.from_dict({"epochs": -5})


def test_a_config_round_trips_through_json():
    config = TrainConfig(epochs=2, lora=True, learning_rate=3e-5)
    assert TrainConfig.from_stored(json.loads(json.dumps(config.to_dict()))) == config
    assert "dataset" not in config.to_dict()


def test_typed_text_is_parsed_by_each_settings_type():
    assert ChatLimits.parse_values({"max_tokens": "20", "temperature": "0", "seed": ""}) == {
        "max_tokens": 20,
        "temperature": 0.0,
        "seed": None,
    }
    assert TrainConfig.parse_values({"lora": "true", "epochs": 3.0}) == {"lora": True, "epochs": 3}
    with pytest.raises(InvalidConfig, match="'colour' is not a setting"):
        TrainConfig.parse_values({"colour": "red"})


def test_widget_ranges_and_sections_come_from_the_specs():
    assert TrainConfig.spec("epochs").widget_range == (1, 1000)
    assert TrainConfig.spec("learning_rate").widget_range == (0.0, 1.0)
    assert TrainConfig.spec("max_grad_norm").widget_range == (0.0, None)
    assert ChatSettings.spec("budget_tokens").cli_flag == "--budget"
    assert ChatLimits.spec("timeout_s").cli_flag == "--timeout"
    sections = [name for name, _ in TrainConfig.sections()]
    assert sections[0] is None and "Optimizer and schedule" in sections
    assert [s.name for s in dict(TrainConfig.sections())[None]] == [
        "base_model",
        "method",
        "epochs",
        "batch_size",
        "learning_rate",
        "max_length_tokens",
    ]


def test_rules_across_fields_are_checked_too():
    with pytest.raises(InvalidConfig, match="lora already freezes"):
        TrainConfig(lora=True, freeze="top_layers")
    with pytest.raises(InvalidAlertRule, match="window of at least 3"):
        RuleSettings(kind="spike", threshold=2, window=2)
    assert RuleSettings(kind="share_negative", window=2).window == 2  # a share rule has no window
