"""superfactory.loop"""
