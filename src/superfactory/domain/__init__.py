"""superfactory.domain"""
