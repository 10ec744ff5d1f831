"""One module per ``tsd train`` target: the model, its data and its losses for the Trainer."""
