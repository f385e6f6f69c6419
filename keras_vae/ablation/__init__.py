"""The paper's ablation: train each ingredient's variant on one budget, evaluate and tabulate them.

``study`` trains and tabulates, ``evaluate`` measures one variant, ``plots`` draws the figures.
"""
