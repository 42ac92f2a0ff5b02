"""superfactory.observe"""
