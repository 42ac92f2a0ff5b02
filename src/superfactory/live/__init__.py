"""superfactory.live"""
