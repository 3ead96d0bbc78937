"""fastnn.MLPClassifier inside a scikit-learn Pipeline, cross-validated and grid-searched.

Run: python examples/sklearn_pipeline.py
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from fastnn import MLPClassifier

X, y = load_digits(return_X_y=True)
pipe = make_pipeline(MinMaxScaler(), MLPClassifier(hidden_layer_sizes=(64,), epochs=20,
                                                   random_state=0))
print(f"5-fold accuracy: {cross_val_score(pipe, X, y, cv=5).mean():.3f}")

search = GridSearchCV(pipe, {"mlpclassifier__optimizer": ["adam", "nadam"],
                             "mlpclassifier__learning_rate": [1e-3, 3e-3]}, cv=3)
search.fit(X, y)
print(f"best {search.best_params_}: accuracy {search.best_score_:.3f}")
