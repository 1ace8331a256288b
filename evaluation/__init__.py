"""Frozen-feature evaluation of a point encoder (eval_svm.py, eval_fewshot.py, embed.py, eval_ssl.ipynb).

    features.py   extract_features, the .npz feature cache (load_features), embed_clouds
    svm.py        linear_svm (SVC(kernel="linear")), C by cross-validation, SVMConfig / evaluate_svm
    fewshot.py    N-way K-shot episodes and their linear SVMs (few_shot)
    plots.py      t-SNE, the confusion matrix, the part-segmentation figure
    seeds.py      spread over seeds: mean, std, seed-paired differences with a 95% interval
    cli.py        the evaluation commands' shared arguments and result JSON
"""
