def main():
    print("imagetool")
