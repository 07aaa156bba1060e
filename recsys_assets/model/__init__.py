"""Model layer: the fine-tuned recommender LM, trained as a GPU job."""
