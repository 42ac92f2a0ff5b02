"""superfactory.policy"""
