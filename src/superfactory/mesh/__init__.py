"""superfactory.mesh"""
