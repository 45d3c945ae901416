"""Distributed batch scoring on Apache Spark: the logged MLflow model as ``mlflow.pyfunc.spark_udf``.

PySpark runs in local mode (``local[2]``, loopback only); its Python workers score the rows
exactly as ``emoclf predict`` does on the same rows.
"""

from __future__ import annotations

import os
import shutil
import sys

import pandas as pd
import pytest

from emoclf.cli import main

pytestmark = pytest.mark.slow
N_ROWS = 300


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs a Java runtime (17 or 21): none on PATH and JAVA_HOME unset")
    pytest.importorskip("pyspark", reason="pip install 'emoclf[test]' brings pyspark")
    from pyspark.sql import SparkSession

    # Workers must run this interpreter: it is the one with emoclf, torch and MLflow installed.
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("emoclf-test")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.mark.parametrize("model", ["trained", "trained_multi"], ids=["single-label", "multi-label"])
def test_spark_udf_scores_like_emoclf_predict(spark, model, request, tmp_path, monkeypatch):
    import mlflow
    from pyspark.sql.functions import struct

    from emoclf.data.io import demo_path
    from emoclf.mlflow_model import log_pyfunc
    from emoclf.modeling import BundleMeta

    trained = request.getfixturevalue(model)
    texts = pd.read_csv(demo_path())["text"].head(N_ROWS).tolist()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # restored after the test, whatever set_tracking_uri does
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    try:
        with mlflow.start_run():
            uri = log_pyfunc(trained.model_dir, texts[:2]).model_uri
        # No result_type: the logged signature makes it a struct of the prediction columns.
        score = mlflow.pyfunc.spark_udf(spark, uri, env_manager="local")
        rows = spark.createDataFrame(pd.DataFrame({"id": range(len(texts)), "text": texts})).repartition(2)
        spark_out = (
            rows.withColumn("p", score(struct("text")))
            .select("id", "p.*")
            .toPandas()
            .sort_values("id")
            .reset_index(drop=True)
        )

        pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
        assert (
            main(
                [
                    "predict",
                    "--model",
                    uri,
                    "--input",
                    str(tmp_path / "in.csv"),
                    "--output",
                    str(tmp_path / "out.parquet"),
                ]
            )
            == 0
        )
    finally:
        mlflow.set_tracking_uri(previous)
    cli_out = pd.read_parquet(tmp_path / "out.parquet")

    assert spark.sparkContext.defaultParallelism == 2 and rows.rdd.getNumPartitions() == 2
    prob_columns = [f"prob_{label}" for label in BundleMeta.read(trained.model_dir).labels]
    if model == "trained":
        decided, numbers = ["predicted_label"], ["predicted_probability", *prob_columns]
    else:  # every label over its threshold, and every label's own probability
        decided, numbers = ["predicted_labels"], prob_columns
    assert spark_out.columns.tolist() == ["id", *decided, *numbers, "skipped"]
    assert len(spark_out) == len(cli_out) == N_ROWS
    assert spark_out[decided].values.tolist() == cli_out[decided].values.tolist()
    pd.testing.assert_frame_equal(
        spark_out[numbers], cli_out[numbers], check_dtype=False, check_exact=False, atol=1e-5, rtol=0
    )
