import pytest

from pure_model_api.config import load_settings


def test_defaults_are_the_documented_ones():
    settings = load_settings([], environ={})
    assert (settings.model, settings.device, settings.host, settings.port) == \
        ("Qwen/Qwen2.5-7B-Instruct", "auto", "127.0.0.1", 5000)
    assert settings.max_history_rounds == 20


def test_flags_beat_environment_which_beats_defaults():
    environ = {"PURE_API_PORT": "7000", "PURE_API_DEVICE": "cpu", "PURE_API_API_KEY": "k1, k2"}
    settings = load_settings(["--port", "8080"], environ=environ)
    assert settings.port == 8080 and settings.device == "cpu"
    assert settings.api_key == ["k1", "k2"]


def test_list_flags_repeat():
    settings = load_settings(["--api-key", "a", "--api-key", "b", "--served-model-name", "alias"], environ={})
    assert settings.api_key == ["a", "b"]
    assert settings.model_names == ["Qwen/Qwen2.5-7B-Instruct", "alias"]


def test_a_bad_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_settings(["--port", "not-a-port"], environ={})
    assert exit_info.value.code == 2
    assert "--port" in capsys.readouterr().err
