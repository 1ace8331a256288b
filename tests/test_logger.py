"""util/logger.py: a disabled logger writes nothing."""


from __future__ import annotations


import pytest

from util.logger import Logger



def test_logger_disabled_writes_nothing(tmp_path):
    log = Logger(tmp_path / "x", enabled=False)
    log.info("hello")
    log.log({"a": 1.0}, step=0)
    log.close()
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="wandb_mode"):
        Logger(tmp_path, wandb_mode="maybe")
