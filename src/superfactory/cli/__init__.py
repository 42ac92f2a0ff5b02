"""superfactory.cli"""
