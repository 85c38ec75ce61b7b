"""The ``velocitas`` command, driven through typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from velocitas.cli.main import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def test_backtest_without_arguments_runs_on_the_packaged_sample():
    result = _invoke("backtest")
    assert result.exit_code == 0, result.output
    assert "BTC_SMA_Crossover" in result.output
    assert "ETH_SMA_Crossover" in result.output
    assert "Sharpe" in result.output


def test_backtest_json_for_one_coin_is_one_object_with_the_documented_fields():
    result = _invoke("backtest", "--coin", "BTC", "--strategy", "RSI", "--json")
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert set(obj) == {"strategy", "coin", "params", "metrics", "trades", "fills_digest"}
    assert (obj["strategy"], obj["coin"]) == ("RSI", "BTC")
    assert set(obj["metrics"]) == {
        "total_pnl", "total_return", "sharpe", "sortino", "max_drawdown", "win_rate",
        "profit_factor", "round_trips", "exposure",
    }  # fmt: skip
    assert obj["trades"], "RSI trades on three days of minutes"
    assert set(obj["trades"][0]) == {"timestamp", "side", "price", "quantity", "fee"}
    assert obj["trades"][0]["timestamp"] > 1_700_000_000_000  # milliseconds


def test_backtest_json_without_coin_is_a_list_per_coin():
    result = _invoke("backtest", "--json", "--param", "fast_period=5", "--param", "slow_period=20")
    assert result.exit_code == 0, result.output
    objs = json.loads(result.stdout)
    assert [o["coin"] for o in objs] == ["BTC", "ETH"]
    assert objs[0]["params"]["fast_period"] == 5


def test_backtest_on_a_real_file_with_a_custom_strategy(tmp_path: Path, shared_file):
    data = shared_file("BTC-ticks-seed-format.csv")
    script = tmp_path / "mine.py"
    script.write_text(
        "from velocitas import Strategy\n"
        "class EveryHundred(Strategy):\n"
        "    n = 0\n"
        "    def execute(self, market_data):\n"
        "        self.n += 1\n"
        "        if self.n % 100 == 0:\n"
        "            return ('SELL', 0.01) if self.position > 0 else ('BUY', 0.01)\n"
        "        return None\n"
    )
    result = _invoke("backtest", str(data), "--strategy", f"{script}:EveryHundred", "--json")
    assert result.exit_code == 0, result.output
    [obj] = json.loads(result.stdout)
    assert obj["coin"] == "BTC"
    assert len(obj["trades"]) == 49  # 5,000 ticks: a signal every 100th, the last one pending


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--strategy", "Nope"), "unknown strategy 'Nope'"),
        (("--param", "fast_period"), "--param takes key=value"),
        (("--param", "fast_period=50"), "fast_period must be < slow_period"),
        (("--fill", "open"), "--fill must be 'next' or 'close'"),
        (("--fee-bps", "-3"), "fee_bps must be in"),
        (("--coin", "DOGE"), "no market data for coin DOGE"),
        (("/no/such/file.csv",), "no such data file"),
        (("--backend", "gpu"), "--backend must be serial, process or ray"),
        (("--workers", "0", "--backend", "process"), "--workers must be >= 1"),
        (("--strategy", "all", "--param", "period=3"), "--param applies to a single"),
    ],
)
def test_bad_arguments_exit_2_with_one_clear_line(args, message):
    result = _invoke("backtest", *args)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert message in lines[0]


def test_a_bad_data_file_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "BTCUSDT-1m.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n1,2,3,1,2,5\n2,2,3,1,abc,5\n")
    result = _invoke("backtest", str(bad))
    assert result.exit_code == 2
    assert str(bad) in result.stderr
    assert "line 3" in result.stderr


def test_every_backend_and_worker_count_gives_the_same_fills_digests():
    digests = {}
    for extra in ([], ["--backend", "process", "--workers", "2"], ["--backend", "process"]):
        result = _invoke("backtest", "--strategy", "all", "--json", *extra)
        assert result.exit_code == 0, result.output
        objs = json.loads(result.stdout)
        assert len(objs) == 12  # six built-ins on BTC and ETH
        digests[" ".join(extra) or "serial"] = [(o["coin"], o["strategy"], o["fills_digest"])
                                                for o in objs]  # fmt: skip
    assert len({tuple(v) for v in digests.values()}) == 1, digests


def test_several_strategies_with_one_coin_give_a_list():
    result = _invoke("backtest", "--coin", "ETH", "--strategy", "RSI", "--strategy", "MACD",
                     "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [o["strategy"] for o in json.loads(result.stdout)] == ["RSI", "MACD"]


def test_strategies_lists_every_builtin():
    result = _invoke("strategies")
    assert result.exit_code == 0
    for name in ("SMA_Crossover", "Momentum", "MeanReversion", "RSI", "BollingerBands", "MACD"):
        assert name in result.output
