"""The logged MLflow model, defined by code rather than by a pickle (MLflow's "models from code").

MLflow runs this file when it loads the model; ``emoclf`` itself travels in the model's
``code/`` folder, so loading needs only the packages in its ``requirements.txt``.
"""

import mlflow

from emoclf.mlflow_model import EmoclfPyfunc

mlflow.models.set_model(EmoclfPyfunc())
