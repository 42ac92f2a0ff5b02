"""superfactory.sim"""
