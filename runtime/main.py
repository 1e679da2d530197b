def main():
    print("pyrun")
    return 0
