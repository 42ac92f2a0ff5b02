"""superfactory.scenario"""
