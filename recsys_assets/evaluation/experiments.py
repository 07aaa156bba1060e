"""The experiments job: the reference's two studies, reproduced on this marketplace.

1. Target strategy: one model per preset of ``recsys_assets.llm_data.targets.PRESETS`` (own,
   similar users, similar items, clusters, combined, and this platform's next purchases), each
   generating the test split with the production chain count. The reference found similar
   items best, +17.5% over combined.
2. Chains: the ``chains_strategy`` model generating with 1, 4, 10 and 20 chains per user. The
   reference found 10-20 chains about +190% hit rate over one.

Every variant runs the production code paths: the prompt dataset builder of llm_data, the
training, engine build and generation GPU jobs (through the ``gpu_jobs`` resource: a local
subprocess, or a GPU pod in production), and the metric functions of recommendation_metrics
on the same held-out purchases. Everything lands under ``experiments/<run id>/`` in the
artifact store and in ``evaluation.experiment_results``; no production dataset, model or
recommendation is touched.
"""

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pandas as pd

from recsys_assets.evaluation import OWNERS
from recsys_assets.evaluation.inputs import load_ground_truth
from recsys_assets.evaluation.metrics import TrainingStats, evaluate
from recsys_assets.evaluation.tables import EXPERIMENTS, append_results
from recsys_assets.keys import EXPERIMENT_STUDIES, ID_TOKENIZER
from recsys_assets.llm_data.assets import CANDIDATE_DEPS, FEATURE_DEPS, PromptDatasetConfig, load_market_data
from recsys_assets.llm_data.dataset import Builder, MarketData, reserved_target_tokens
from recsys_assets.llm_data.dataset_files import SplitFiles
from recsys_assets.llm_data.token_lengths import TokenLengths
from recsys_assets.llm_data.targets import PRESETS
from recsys_assets.model.assets import FineTuneConfig
from resources.artifacts import ArtifactStore, latest_artifact
from resources.generation import GenerationSettings, repeat_share_sql
from resources.gpu_jobs import GpuJobRunner
from resources.splits import EvaluationSplit, SplitDates
from resources.warehouse import Warehouse

# The columns of the reference's study tables.
STUDY_METRICS = ["hit_rate", "precision", "recall", "revenue", "top_bias"]


class ExperimentsConfig(dg.Config):
    strategies: list[str] = list(PRESETS)
    """Target strategy presets of study 1."""
    chains: int = 4
    """Chains per user in study 1 (the production setting)."""
    chains_strategy: str = "next_purchases"
    """The strategy whose model study 2 generates with every chain count (the production default)."""
    chain_counts: list[int] = [1, 4, 10, 20]
    """Chain counts of study 2."""
    ks: list[int] = [10, 200]
    """Cut-offs K of the reported metrics."""
    top_popular: int = 100
    """N of "the N most popular training items" (top bias), as in recommendation_metrics."""
    backend: str = "ctranslate2"
    """Inference backend for the engine build and generation."""
    dataset: PromptDatasetConfig = PromptDatasetConfig()
    """Prompt dataset settings; target_strategy / target_shares are set per variant."""
    training: FineTuneConfig = FineTuneConfig()
    """Fine-tuning settings, the same for every strategy."""

    def variants(self) -> dict[str, list[int]]:
        """Chain counts to generate per strategy; a variant both studies need runs once."""
        plan = {strategy: [self.chains] for strategy in self.strategies}
        plan[self.chains_strategy] = sorted({*plan.get(self.chains_strategy, []), *self.chain_counts})
        return plan


@dataclass(frozen=True)
class StorePaths:
    """Paths relative to the artifact store, as the orchestrator and as a GPU job see them."""

    base: Path
    gpu_jobs: GpuJobRunner

    def local(self, relative: Path) -> Path:
        path = self.base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def job(self, relative: Path) -> str:
        return self.gpu_jobs.job_path(self.base / relative)

    def relative(self, job_path: str) -> Path:
        return self.gpu_jobs.local_path(job_path).relative_to(self.base)


@dataclass(frozen=True)
class Experiment:
    """What every variant shares."""

    context: dg.AssetExecutionContext
    config: ExperimentsConfig
    gpu_jobs: GpuJobRunner
    paths: StorePaths
    folder: Path  # experiments/<run id>, relative to the store
    tokenizer: str  # as the GPU job sees it
    market: MarketData
    dates: SplitDates
    held_out: pd.DataFrame
    stats: TrainingStats
    generation: GenerationSettings  # the product's generation settings; the chain count is the study's
    keep_bought: bool  # the product's repeat policy on this data

    def run_job(self, module: str, args: list[str]) -> dict:
        invocation = self.gpu_jobs.run(self.context, module=module, args=args, gpu_count=self.config.training.gpu_count or None)
        return {name: value.value for name, value in invocation.get_materialize_result().metadata.items()}


def write_dataset(experiment: Experiment, strategy: str, lengths: TokenLengths) -> Path:
    """The prompt dataset with ``strategy``'s targets (val/test targets are the next purchases either way)."""
    builder = Builder(experiment.market, experiment.config.dataset.spec(strategy), experiment.dates, lengths)
    # The folder name is part of the model version: unique per run and strategy, so that the
    # strategies' models do not share a version (and a folder).
    folder = experiment.folder / "datasets" / f"{experiment.folder.name[:8]}-{strategy}"
    splits = ("train", "val", "test")
    with SplitFiles(experiment.paths.local(folder), splits) as files:
        for chunk in builder.chunks(splits):
            files.write(chunk)
    return folder


def train_and_build(experiment: Experiment, dataset: Path) -> tuple[Path, dict]:
    """Fine-tune on ``dataset`` and build the inference engine; returns the engine folder."""
    training = experiment.config.training.training(experiment.gpu_jobs.mode)
    trained = experiment.run_job("gpu_jobs.train", ["--dataset", str(dataset), "--tokenizer", experiment.tokenizer, *training.to_args()])
    engine = experiment.folder / "engines" / dataset.name
    merged = experiment.paths.relative(trained["path"]) / "merged"
    experiment.run_job(
        "gpu_jobs.build_engine",
        ["--model-dir", experiment.paths.job(merged), "--backend", experiment.config.backend, "--out-dir", experiment.paths.job(engine)],
    )
    return engine, trained


def generate_and_score(experiment: Experiment, dataset: Path, engine: Path, chains: int) -> pd.DataFrame:
    """Recommendations for the test prompts with ``chains`` chains, scored: ``metric, k, value`` rows."""
    config, paths = experiment.config, experiment.paths
    output = experiment.folder / "recommendations" / f"{dataset.name}-{chains}-chains.parquet"
    args = ["--engine-dir", paths.job(engine), "--prompts", paths.job(dataset / "test.parquet"), "--output", paths.job(output)]
    args += ["--catalog", paths.job(experiment.folder / "catalog.parquet"), "--bought", paths.job(experiment.folder / "bought.parquet")]
    reserved = reserved_target_tokens(pd.read_parquet(paths.local(dataset / "train.parquet"), columns=["target_tokens"])["target_tokens"])
    args += experiment.generation.job_args(reserved, experiment.keep_bought, chains)
    generated = experiment.run_job("gpu_jobs.generate", args)
    recommendations = pd.read_parquet(paths.local(output), columns=["user_id", "rank", "item_id"])
    scores = evaluate(recommendations, experiment.held_out, experiment.stats, config.ks)
    # The generated ids that were not in the catalog (dropped before the list was written).
    raw_valid = pd.DataFrame([{"metric": "raw_valid_id_rate", "k": None, "value": generated["valid_id_rate"]}])
    return pd.concat([scores, raw_valid], ignore_index=True)


def study_tables(results: pd.DataFrame, index: str, reference, ks: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Values (rows ``index``, columns metric@k of STUDY_METRICS) and their relative deltas
    against the ``reference`` row, the way the reference system reported its studies."""
    scored = results[results["metric"].isin(STUDY_METRICS) & results["k"].isin(ks)]
    table = scored.pivot_table(index=index, columns=["metric", "k"], values="value", aggfunc="first")
    table = table.reindex(columns=[(metric, k) for k in ks for metric in STUDY_METRICS])
    table.columns = [f"{metric}@{k}" for metric, k in table.columns]
    deltas = table.div(table.loc[reference]).sub(1.0) if reference in table.index else table * float("nan")
    return table, deltas


def study_markdown(values: pd.DataFrame, deltas: pd.DataFrame, reference) -> str:
    formatted = values.map(lambda v: f"{v:.4f}") + deltas.map(lambda d: "" if pd.isna(d) else f" ({d:+.0%})")
    return f"Relative to {reference} in brackets; top_bias: lower is better.\n\n" + formatted.to_markdown(disable_numparse=True)


def _evaluated_at() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dg.asset(
    key=EXPERIMENT_STUDIES,
    group_name="experiments",  # launched by hand: no automation, not in `recsys run` (automation.py)
    owners=OWNERS,
    kinds={"pytorch", "python"},
    deps=[ID_TOKENIZER, *CANDIDATE_DEPS, *FEATURE_DEPS],
    # Holds no warehouse pool slot for its hours: it reads the warehouse at the start and
    # writes its results at the end.
    description=(
        "The reference's two studies on this marketplace: one model per target strategy (own / similar users / similar "
        "items / clusters / combined), and the chain count (1 / 4 / 10 / 20), against HitRate, Precision, Recall, "
        f"Revenue and Top bias on the test period. Trains, builds and generates through the GPU jobs; rows in {EXPERIMENTS}."
    ),
)
def experiment_studies(
    context: dg.AssetExecutionContext,
    config: ExperimentsConfig,
    warehouse: Warehouse,
    splits: EvaluationSplit,
    artifacts: ArtifactStore,
    gpu_jobs: GpuJobRunner,
    generation: GenerationSettings,
) -> dg.MaterializeResult:
    from transformers import PreTrainedTokenizerFast

    started = time.perf_counter()
    paths = StorePaths(artifacts.base, gpu_jobs)
    tokenizer_dir = latest_artifact(context.instance, ID_TOKENIZER)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    folder = Path("experiments") / context.run_id
    with warehouse.get_connection() as conn:
        dates = splits.dates(conn)
        market = load_market_data(conn)
        held_out, stats = load_ground_truth(conn, dates, config.top_popular)
        conn.execute("SELECT item_id FROM staging.stg_items").df().to_parquet(paths.local(folder / "catalog.parquet"))
        bought = conn.execute("SELECT DISTINCT user_id, item_id FROM staging.fct_purchases WHERE ts < ?", [dates.test_start]).df()
        keep_bought, policy = generation.keep_bought(float(conn.execute(repeat_share_sql(), [dates.train_cutoff]).fetchall()[0][0]))
    context.log.info(f"Repeat policy: {policy}")
    bought.to_parquet(paths.local(folder / "bought.parquet"))
    experiment = Experiment(
        context, config, gpu_jobs, paths, folder, gpu_jobs.job_path(tokenizer_dir),
        market, dates, held_out, stats, generation, keep_bought,
    )
    lengths = TokenLengths.of_tokenizer(tokenizer)

    frames, models = [], {}
    for strategy, chain_counts in config.variants().items():
        dataset = write_dataset(experiment, strategy, lengths)
        engine, trained = train_and_build(experiment, dataset)
        models[strategy] = {name: trained[name] for name in ("model_version", "val_loss_start", "val_loss_end", "train_seconds")}
        for chains in chain_counts:
            scores = generate_and_score(experiment, dataset, engine, chains)
            frames.append(scores.assign(strategy=strategy, chains=chains))
            headline = scores.set_index(["metric", "k"])["value"]
            context.log.info(f"{strategy}, {chains} chains: HitRate@{config.ks[0]} {headline['hit_rate', config.ks[0]]:.4f}")
    results = pd.concat(frames, ignore_index=True).assign(run_id=context.run_id).astype({"k": "Int64"})
    with warehouse.get_connection() as conn:
        append_results(conn, EXPERIMENTS, results, _evaluated_at())

    by_strategy = results[results["chains"] == config.chains]
    by_chains = results[results["strategy"] == config.chains_strategy]
    strategy_reference = "combined" if "combined" in config.strategies else config.strategies[0]
    return dg.MaterializeResult(
        metadata={
            "run_folder": dg.MetadataValue.path(str(paths.local(folder))),
            "dagster/row_count": len(results),
            "models": dg.MetadataValue.json(models),
            "target_strategy_study": dg.MetadataValue.md(
                study_markdown(*study_tables(by_strategy, "strategy", strategy_reference, config.ks), strategy_reference)
            ),
            "chains_study": dg.MetadataValue.md(
                study_markdown(*study_tables(by_chains, "chains", min(config.chain_counts), config.ks), f"{min(config.chain_counts)} chain(s)")
            ),
            "seconds": round(time.perf_counter() - started, 1),
        }
    )


experiments_job = dg.define_asset_job(
    "experiments",
    selection=[EXPERIMENT_STUDIES],
    description="Target strategy x chain count studies (evaluation/experiment_studies): trains a model per strategy; hours on CPU.",
)
