import pytest

from pure_model_api.config import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No PURE_API_* variable of the machine running the tests leaks in."""
    import os
    for name in [n for n in os.environ if n.startswith("PURE_API_")]:
        monkeypatch.delenv(name)


def test_defaults_are_the_documented_ones():
    settings = load_settings([])
    assert (settings.model, settings.device, settings.host, settings.port) == \
        ("Qwen/Qwen2.5-7B-Instruct", "auto", "127.0.0.1", 5000)
    assert settings.max_history_rounds == 20 and settings.api_key == [] and settings.no_ui is False


def test_flags_beat_environment_which_beats_defaults(monkeypatch):
    for name, value in {"PURE_API_PORT": "7000", "PURE_API_DEVICE": "cpu", "PURE_API_API_KEY": "k1, k2",
                        "PURE_API_NO_UI": "true", "PURE_API_MAX_QUEUE": "3"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(["--port", "8080", "--max-queue", "5"])
    assert settings.port == 8080 and settings.max_queue == 5  # the flags
    assert settings.device == "cpu" and settings.api_key == ["k1", "k2"] and settings.no_ui is True  # environment
    assert settings.max_batch_size == 16  # the default


def test_list_flags_repeat():
    settings = load_settings(["--api-key", "a", "--api-key", "b", "--served-model-name", "alias", "--no-ui"])
    assert settings.api_key == ["a", "b"] and settings.no_ui is True
    assert settings.model_names == ["Qwen/Qwen2.5-7B-Instruct", "alias"]


@pytest.mark.parametrize("where", ["flag", "environment"])
def test_a_bad_value_is_a_usage_error(capsys, monkeypatch, where):
    if where == "environment":
        monkeypatch.setenv("PURE_API_PORT", "not-a-port")
    with pytest.raises(SystemExit) as exit_info:
        load_settings(["--port", "not-a-port"] if where == "flag" else [])
    assert exit_info.value.code == 2
    assert "--port" in capsys.readouterr().err
